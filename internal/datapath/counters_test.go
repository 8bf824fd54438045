package datapath

import (
	"testing"
)

// TestCounters runs a mixed sequence through both programs and checks that
// the ingress counters add up to exactly what was forwarded and passed,
// and that nothing is counted on the egress.
func TestCounters(t *testing.T) {
	tn := newTestNet(t)
	seq := []struct {
		frame []byte
		want  string
	}{
		{udp4Len(ipDst, 28).bytes(t), fwd}, // 60-byte minimum frame
		{tcp4(ipDst).bytes(t), fwd},
		{tcp4(ipDst).with(func(p *pkt) { p.v4().TTL = 1 }).bytes(t), "ttl"},
		{udp6Len(ip6Dst, out0MTU).bytes(t), fwd}, // the largest that fits
		{icmp6(ip6Dst).bytes(t), fwd},
		{tcp4(ipNoNeigh).bytes(t), "no_neigh"},
		{udp4Len(ipDst, 1450).bytes(t), "frag_needed"},
		{arpFrame(t, macIn0), "not_ip"},
		{udp4Len(ipDst, 777).bytes(t), fwd},
		{tcp6(ip6Hairpin).bytes(t), "hairpin"},
	}
	var wantFwd, wantFwdBytes, wantPass, wantPassBytes uint64
	wantReason := make(map[string]uint64)
	for round := range 3 {
		for _, h := range []hook{hookXDP, hookTC} {
			for i, s := range seq {
				res, err := tn.run(h, s.frame, runOpts{})
				if err != nil {
					t.Fatal(err)
				}
				code := h.passCode()
				if s.want == fwd {
					code = h.redirectCode()
				}
				if res.verdict != code {
					t.Fatalf("round %d %s frame %d: verdict %s, want %s", round, h, i, h.verdictName(res.verdict), h.verdictName(code))
				}
				if s.want == fwd {
					wantFwd++
					wantFwdBytes += uint64(len(trimmed(s.frame))) // as sent on: padding trimmed
				} else {
					wantPass++
					wantPassBytes += uint64(len(s.frame))
					wantReason[s.want]++
				}
			}
		}
	}

	in, ok := tn.stats(t, tn.in0)
	if !ok {
		t.Fatal("in0 has no counters")
	}
	if in.FwdPackets != wantFwd || in.FwdBytes != wantFwdBytes {
		t.Errorf("forwarded %d packets / %d bytes, want %d / %d", in.FwdPackets, in.FwdBytes, wantFwd, wantFwdBytes)
	}
	if in.PassPackets != wantPass || in.PassBytes != wantPassBytes {
		t.Errorf("passed %d packets / %d bytes, want %d / %d", in.PassPackets, in.PassBytes, wantPass, wantPassBytes)
	}
	for i, name := range tn.d.ReasonNames() {
		if in.PassReason[i] != wantReason[name] {
			t.Errorf("pass reason %s: %d, want %d", name, in.PassReason[i], wantReason[name])
		}
	}
	out, ok := tn.stats(t, tn.out0)
	if !ok {
		t.Fatal("out0 has no counters")
	}
	if out.FwdPackets != 0 || out.PassPackets != 0 || out.FwdBytes != 0 || out.PassBytes != 0 {
		t.Errorf("egress out0 counted %+v; counters belong to the ingress", out)
	}
}

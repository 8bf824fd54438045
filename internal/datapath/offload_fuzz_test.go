package datapath

import (
	"bytes"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// fuzzConns are the connections FuzzOffload's router offloads. Ports come
// from offloadNet's counter, so every fuzz worker (its own process and
// namespace) has the same tuples and a corpus entry means the same there.
var fuzzConns = []struct {
	kind  string
	proto uint8
	v6    bool
}{
	{kindSNAT, unix.IPPROTO_TCP, false},
	{kindSNAT, unix.IPPROTO_UDP, false},
	{kindDNAT, unix.IPPROTO_TCP, false},
	{kindDNAT, unix.IPPROTO_UDP, false},
	{kindPlain, unix.IPPROTO_TCP, false},
	{kindSNAT, unix.IPPROTO_TCP, true},
	{kindSNAT, unix.IPPROTO_UDP, true},
	{kindDNAT, unix.IPPROTO_TCP, true},
	{kindPlain, unix.IPPROTO_UDP, true},
}

// offloadSeeds are frames of every leg of conns arriving where they
// should, and variants the datapath must pass or handle specially.
func offloadSeeds(t testing.TB, conns []natConn) (frames [][]byte, fromOut []bool) {
	add := func(f []byte, out bool) {
		frames = append(frames, f)
		fromOut = append(fromOut, out)
	}
	for _, c := range conns {
		for _, reply := range []bool{false, true} {
			l := c.leg(reply)
			out := l.ingress() == sideOut0
			base := l.inFrame(t, seg{})
			add(base, out)
			hairpin := bytes.Clone(base) // arriving where it would leave
			copy(hairpin[0:6], l.egress().mac)
			add(hairpin, !out)
			add(l.inFrame(t, seg{ttl: 2}), out)
			add(l.inFrame(t, seg{ttl: 1}), out)
			add(l.inFrame(t, seg{payload: payload(1500)}), out) // over either MTU
			if l.in.Proto == unix.IPPROTO_TCP {
				add(l.inFrame(t, seg{tcp: func(th *layers.TCP) { th.FIN = true }}), out)
				add(l.inFrame(t, seg{tcp: func(th *layers.TCP) { th.RST = true }}), out)
				// far outside the window: dropped while both directions are cached
				add(l.inFrame(t, seg{tcp: func(th *layers.TCP) { th.RST, th.ACK, th.Seq = true, false, 1<<31 }}), out)
				add(l.inFrame(t, seg{tcp: func(th *layers.TCP) { th.SYN = true }}), out)
			} else {
				if l.in.Src.Addr().Is4() {
					add(l.inFrame(t, seg{noCsum: true}), out)
				}
				add(l.inFrame(t, seg{payload: l.zeroingPayload(t)}), out)
			}
			// A bad L4 checksum goes to the kernel (conntrack calls it
			// invalid); a bad IPv4 header checksum is carried, not repaired.
			bad := bytes.Clone(base)
			bad[len(bad)-1] ^= 0x5a
			add(bad, out)
			if l.in.Src.Addr().Is4() {
				bad = bytes.Clone(base)
				bad[14+10] ^= 0xa5
				add(bad, out)
			}
			off, _ := l4Offset(base)
			add(base[:off+8], out)
			add(base[:len(base)-1], out)
		}
	}
	return frames, fromOut
}

// FuzzOffload feeds arbitrary frames to the XDP or the TC program (tc)
// arriving on in0 or out0 (fromOut) of an offload-mode router that holds
// a few established, accepted connections (SNAT, DNAT, none; TCP, UDP;
// IPv4, IPv6), already cached. Each frame must be passed unchanged or
// redirected exactly as the NAT reference model (natModel) forwards it;
// never aborted, and dropped only where the model allows it (a FIN or RST
// of a known flow: out of window). The model is held to the other direction too:
// a frame it forwards must not be passed. Plain `go test` runs only the
// seeds.
func FuzzOffload(f *testing.F) {
	on := newOffloadNet(f)
	model := natModel{}
	var conns []natConn
	for _, fc := range fuzzConns {
		c := on.offloadConn(f, fc.kind, fc.proto, fc.v6)
		model.add(c)
		conns = append(conns, c)
		for _, reply := range []bool{false, true} {
			l := c.leg(reply)
			res, err := on.run(hookXDP, l.inFrame(f, seg{}), runOpts{ingress: on.ifindex(l.ingress())})
			if err != nil || res.verdict != xdpRedirect {
				f.Fatalf("caching %+v: verdict %s, error %v", l, hookXDP.verdictName(res.verdict), err)
			}
		}
	}
	frames, fromOut := offloadSeeds(f, conns)
	for i, fr := range frames {
		f.Add(fr, false, fromOut[i])
		f.Add(fr, true, fromOut[i])
	}
	for _, fr := range seedFrames(f) { // route-mode frames: no flow of ours
		f.Add(fr, false, false)
	}

	f.Fuzz(func(t *testing.T, frame []byte, tc, fromOut bool) {
		h := hookXDP
		if tc {
			h = hookTC
		}
		if len(frame) > maxFuzzFrame || len(frame) < minRunLen(h, frame) {
			return // the kernel refuses these (TestTruncation)
		}
		ing := sideIn0
		if fromOut {
			ing = sideOut0
		}
		res, err := on.run(h, frame, runOpts{ingress: on.ifindex(ing)})
		if err != nil {
			t.Fatal(err)
		}
		v := model.expect(frame, ing)
		switch res.verdict {
		case h.passCode():
			if v.want != nil {
				t.Fatalf("%s passed a frame from %s the model forwards: %s", h, ing.name, headers(frame))
			}
			if !bytes.Equal(res.out, frame) {
				t.Fatalf("%s modified a passed frame: %s", h, diffBytes(res.out, frame))
			}
		case h.redirectCode():
			if v.want == nil {
				t.Fatalf("%s redirected a frame from %s the model passes (%s): %s", h, ing.name, v.why, headers(frame))
			}
			if err := checkNAT(frame, res.out, v.want); err != nil {
				t.Fatalf("%s from %s: %v\n input %s", h, ing.name, err, headers(frame))
			}
		case dropCode(h):
			if !v.mayDrop {
				t.Fatalf("%s dropped a frame from %s the model passes or forwards (%s): %s", h, ing.name, v.why, headers(frame))
			}
		default:
			t.Fatalf("%s verdict %s from %s for %s", h, h.verdictName(res.verdict), ing.name, headers(frame))
		}
	})
}

// dropCode is the verdict that drops a frame in hook h.
func dropCode(h hook) uint32 {
	if h == hookTC {
		return tcShot
	}
	return xdpDrop
}

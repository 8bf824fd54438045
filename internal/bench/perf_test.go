package bench

import (
	"bytes"
	"strings"
	"testing"
)

func TestParsePerfReport(t *testing.T) {
	out := []byte(`
# comment lines and blanks are skipped
    13.20%  [k] veth_xdp_rcv_one
    10.30%  [k] bpf_prog_6deef7357e7b4530_fp_xdp
     4.00%  [k] htab_map_hash
     0.90%  [.] runtime.mallocgc
`)
	got := parsePerfReport(out, 3)
	want := []PerfShare{{"veth_xdp_rcv_one", 13.2}, {"bpf_prog_6deef7357e7b4530_fp_xdp", 10.3}, {"htab_map_hash", 4}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("share %d: %v, want %v", i, got[i], want[i])
		}
	}
	if s := shortSymbol(got[1].Symbol); s != "bpf:fp_xdp" {
		t.Errorf("short name %q", s)
	}
	if s := shortSymbol("ip_forward"); s != "ip_forward" {
		t.Errorf("short name %q", s)
	}
}

func TestWritePerf(t *testing.T) {
	r := &Report{Cells: []Cell{
		{Config: ConfigOffloadXDP, Label: "fastpath offload + masq (XDP)", FrameSize: 64, Flows: 1000,
			Perf: []PerfShare{{"bpf_prog_1_fp_xdp", 10.3}, {"htab_map_hash", 4}}},
		{Config: ConfigKernel, Label: "kernel forwarding", FrameSize: 64, Flows: 1},
	}}
	var b bytes.Buffer
	if err := r.writePerf(&b); err != nil {
		t.Fatal(err)
	}
	if s := b.String(); !strings.Contains(s, "fastpath offload + masq (XDP), 64 B, 1k: 10.3% bpf:fp_xdp, 4.0% htab_map_hash") || strings.Contains(s, "kernel forwarding") {
		t.Errorf("perf section:\n%s", s)
	}
}

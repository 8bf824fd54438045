package bench

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"image/png"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	fpconfig "github.com/fastpath-router/fastpath/internal/config"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Summary
	}{
		{nil, Summary{}},
		{[]float64{3}, Summary{3, 3, 3}},
		{[]float64{5, 1, 3}, Summary{3, 1, 5}},
		{[]float64{4, 1, 3, 2}, Summary{2.5, 1, 4}},
	} {
		if got := summarize(tc.in); got != tc.want {
			t.Errorf("summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	in := []float64{5, 1, 3}
	summarize(in)
	if in[0] != 5 {
		t.Error("summarize sorted its input in place")
	}
}

// cell builds a finished cell whose samples have the given rx and tx Mpps.
func cell(config string, size, flows int, rx, tx []float64) Cell {
	c := Cell{Config: config, Label: config + " label", FrameSize: size, Flows: flows}
	for i := range rx {
		c.Samples = append(c.Samples, Sample{DurationSec: 1, RxMpps: rx[i], TxMpps: tx[i], RxGbps: rx[i] * float64(size) * 8 / 1000})
	}
	c.finish(true)
	return c
}

func TestCellFinish(t *testing.T) {
	ok := cell("x", 64, 1, []float64{1, 2, 3}, []float64{14, 14, 14})
	if ok.Failed() || ok.GenLimited || ok.RxMpps != (Summary{2, 1, 3}) {
		t.Errorf("ok cell: %+v", ok)
	}
	lim := cell("x", 64, 1, []float64{13.9, 14, 14}, []float64{14, 14, 14})
	if !lim.GenLimited {
		t.Error("a cell receiving all the generator sent is not generator-limited")
	}
	zero := cell("x", 64, 1, []float64{0, 0, 0}, []float64{14, 14, 14})
	if !zero.Failed() || zero.Error != "nothing forwarded" {
		t.Errorf("zero cell: error %q", zero.Error)
	}
	trickle := cell("x", 64, 1, []float64{0.01, 0.01, 0.01}, []float64{14, 14, 14})
	if !trickle.Failed() || !strings.Contains(trickle.Error, "forwarded only") {
		t.Errorf("trickle cell: error %q", trickle.Error)
	}
	none := Cell{}
	none.finish(true)
	if !none.Failed() {
		t.Error("a cell without samples did not fail")
	}
	set := Cell{Error: "setup: boom", Samples: []Sample{{RxMpps: 5, TxMpps: 5}}}
	set.finish(true)
	if set.Error != "setup: boom" || set.GenLimited {
		t.Errorf("an error set before finish changed: %+v", set)
	}
}

func testReport() *Report {
	r := &Report{
		Schema:   SchemaVersion,
		Baseline: ConfigKernelMasq,
		Machine:  Machine{Kernel: "6.18.0", CPUs: 2},
		Settings: Settings{
			Configs:    []string{ConfigVeth, ConfigKernelMasq, ConfigOffloadXDP, ConfigOffloadTC},
			FrameSizes: []int{64, 1500}, Flows: []int{1, 100_000}, Repeats: 3, DurationSec: 2, Split: true,
		},
	}
	for _, s := range r.Settings.FrameSizes {
		for _, f := range r.Settings.Flows {
			r.Cells = append(r.Cells,
				cell(ConfigVeth, s, f, []float64{14, 14.5, 15}, []float64{15, 15, 15}),
				cell(ConfigKernelMasq, s, f, []float64{1, 1.1, 0.9}, []float64{15, 15, 15}),
				cell(ConfigOffloadXDP, s, f, []float64{6, 6.2, 5.8}, []float64{15, 15, 15}),
			)
			c := Cell{Config: ConfigOffloadTC, Label: "tc label", FrameSize: s, Flows: f, Error: "setup: daemon did not start"}
			c.finish(true)
			r.Cells = append(r.Cells, c)
		}
	}
	for i := range r.Cells {
		if label, ok := configByName(r.Cells[i].Config); ok {
			r.Cells[i].Label = label.label
		}
	}
	return r
}

func TestRatio(t *testing.T) {
	r := testReport()
	v, ok := r.Ratio(r.Cell(ConfigOffloadXDP, 64, 1))
	if !ok || v != 6 {
		t.Errorf("ratio = %v, %v; want 6", v, ok)
	}
	if _, ok := r.Ratio(r.Cell(ConfigOffloadTC, 64, 1)); ok {
		t.Error("a failed cell has a ratio")
	}
	if r.Cell(ConfigKernel, 64, 1) != nil {
		t.Error("found a cell that was not measured")
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := testReport().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Mpps", "Gbit/s", "vs kernel+masq", "kernel + conntrack + masquerade",
		"fastpath offload + masq (XDP)", "6.00", "5.80..6.20", "6.00x", "1.00x",
		"FAIL", "setup: daemon did not start",
		"100k", "1500 B", "gen-limited", "median of 3 repeats", "the router has CPU",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// 64 B 1 flow, 64 B 100k, 1500 B 1, 1500 B 100k: four blocks, a row per
	// configuration each.
	if n := strings.Count(out, "fastpath offload + masq (TC)"); n != 4 {
		t.Errorf("TC row appears %d times, want 4:\n%s", n, out)
	}
}

func TestJSONSchema(t *testing.T) {
	var b bytes.Buffer
	if err := testReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema", "started", "machine", "settings", "baseline", "cells"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	if doc["schema"] != SchemaVersion {
		t.Errorf("schema = %v", doc["schema"])
	}
	cells := doc["cells"].([]any)
	c0 := cells[0].(map[string]any)
	for _, k := range []string{"config", "label", "frame_bytes", "flows", "samples", "rx_mpps", "rx_gbps", "tx_mpps", "generator_limited"} {
		if _, ok := c0[k]; !ok {
			t.Errorf("cell lacks %q: %v", k, c0)
		}
	}
	s0 := c0["samples"].([]any)[0].(map[string]any)
	for _, k := range []string{"duration_seconds", "rx_packets", "rx_bytes", "tx_packets", "rx_mpps", "rx_gbps", "tx_mpps"} {
		if _, ok := s0[k]; !ok {
			t.Errorf("sample lacks %q: %v", k, s0)
		}
	}
	med := c0["rx_mpps"].(map[string]any)
	if med["median"] != 14.5 || med["min"] != 14.0 || med["max"] != 15.0 {
		t.Errorf("rx_mpps = %v", med)
	}
	// And back: the file is the report.
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Cells) != 16 || back.Cell(ConfigOffloadXDP, 1500, 100_000).RxMpps.Median != 6 {
		t.Errorf("round trip lost cells: %d", len(back.Cells))
	}
}

func TestPlot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.png")
	r := testReport()
	if err := r.SavePlot(path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 600 {
		t.Errorf("chart is %dx%d, too small to read", b.Dx(), b.Dy())
	}
	if err := (&Report{}).WritePlot(&bytes.Buffer{}); err == nil {
		t.Error("plotting an empty report succeeded")
	}
}

func TestFlowsLabel(t *testing.T) {
	for n, want := range map[int]string{1: "1", 999: "999", 1000: "1k", 1500: "1500", 100_000: "100k", 1_000_000: "1M"} {
		if got := FlowsLabel(n); got != want {
			t.Errorf("FlowsLabel(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestFrameHeader(t *testing.T) {
	f := frameSpec{
		size: 64,
		dst:  net.HardwareAddr{2, 0, 0, 0, 0, 1}, src: net.HardwareAddr{2, 0, 0, 0, 0, 2},
		from: netip.MustParseAddr("198.18.1.1"), to: netip.MustParseAddr("198.18.2.1"),
	}
	frame, err := f.frame()
	if err != nil {
		t.Fatal(err)
	}
	if len(frame) != 64 {
		t.Fatalf("frame of %d bytes", len(frame))
	}
	ip := frame[ethLen : ethLen+ipLen]
	if binary.BigEndian.Uint16(ip[2:]) != 50 || ip[8] != 64 || ip[9] != 17 {
		t.Errorf("ip header %x", ip)
	}
	// A header with its checksum sums to 0xffff: the checksum of it is 0.
	if ipChecksum(ip) != 0 {
		t.Errorf("ip checksum wrong: header %x", ip)
	}
	if binary.BigEndian.Uint16(frame[ethLen+ipLen+4:]) != 30 {
		t.Errorf("udp length %d", binary.BigEndian.Uint16(frame[ethLen+ipLen+4:]))
	}
	for _, bad := range []int{MinFrame - 1, MaxFrame + 1} {
		f.size = bad
		if _, err := f.header(); err == nil {
			t.Errorf("frame size %d accepted", bad)
		}
	}
	// Flows are distinct 5-tuples up to MaxFlows.
	seen := map[[2]uint16]bool{}
	for _, i := range []int{0, 1, sportSpan - 1, sportSpan, MaxFlows - 1} {
		s, d := flowTuple(i)
		if seen[[2]uint16{s, d}] {
			t.Errorf("flow %d repeats ports %d/%d", i, s, d)
		}
		seen[[2]uint16{s, d}] = true
	}
	if s, d := flowTuple(MaxFlows - 1); s < sportBase || int(d) != dportBase+(MaxFlows-1)/sportSpan {
		t.Errorf("last flow ports %d/%d", s, d)
	}
}

func TestDaemonConfigLoads(t *testing.T) {
	for _, name := range []string{ConfigRouteXDP, ConfigOffloadTC} {
		c, _ := configByName(name)
		y := daemonConfig(c, "/run/fastpath/bench-x.sock", flowEntries(100_000))
		cfg, err := fpconfig.Parse([]byte(y), "bench.yaml")
		if err != nil {
			t.Fatalf("%s: daemon rejects the config: %v\n%s", name, err, y)
		}
		if len(cfg.Interfaces) != 2 || string(cfg.Interfaces[0].Mode) != c.mode || string(cfg.Interfaces[1].Attach) != c.attach {
			t.Errorf("%s: %+v", name, cfg.Interfaces)
		}
		if cfg.Flows.MaxEntries < 2*100_000 {
			t.Errorf("%s: flow cache of %d for 100k flows", name, cfg.Flows.MaxEntries)
		}
	}
}

func TestOptions(t *testing.T) {
	o := Options{Configs: []string{ConfigOffloadXDP, ConfigKernel}, Sizes: []int{1500, 64, 64}, Binary: "/bin/true"}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.Configs, ",") != "kernel,offload-xdp" {
		t.Errorf("configs not in run order: %v", o.Configs)
	}
	if len(o.Sizes) != 2 || o.Sizes[0] != 64 || o.Repeats != DefaultRepeats || o.Duration != DefaultDuration {
		t.Errorf("defaults: %+v", o)
	}
	for _, bad := range []Options{
		{Configs: []string{"nope"}},
		{Sizes: []int{10}},
		{Flows: []int{0}},
		{Flows: []int{MaxFlows + 1}},
		{Repeats: 1000},
		{Duration: 1},
	} {
		if err := bad.defaults(); err == nil {
			t.Errorf("options %+v accepted", bad)
		}
	}
	// --checks: each offload config it has a twin for is followed by it;
	// the twins are not selectable alone, and take no round trips.
	checks := Options{Configs: []string{ConfigOffloadTC, ConfigKernelMasq, ConfigOffloadXDP, ConfigOffloadAuto}, Checks: true, Binary: "/bin/true"}
	if err := checks.defaults(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(checks.Configs, ","); got != "kernel-masq,offload-xdp,offload-xdp-nocsum,offload-tc,offload-tc-nocsum,offload-auto" {
		t.Errorf("--checks configs: %s", got)
	}
	if slices.Contains(ConfigNames(), ConfigOffloadXDPNoCsum) {
		t.Error("a -nocsum config is selectable without --checks")
	}
	if bad := (Options{Configs: []string{ConfigOffloadTCNoCsum}}); bad.defaults() == nil {
		t.Error("--configs offload-tc-nocsum accepted")
	}
	if c, _ := configByName(ConfigOffloadTCNoCsum); !c.noChecksum || latencyConfig(c) || c.attach != "tc" {
		t.Errorf("offload-tc-nocsum: %+v", c)
	}
	plain, all := Options{Binary: "/bin/true"}, Options{Checks: true, Binary: "/bin/true"}
	if err := plain.defaults(); err != nil {
		t.Fatal(err)
	}
	if err := all.defaults(); err != nil || len(all.Configs) != len(plain.Configs)+2 {
		t.Errorf("--checks with every config: %v, %v", all.Configs, err)
	}
	quick := Options{Sizes: QuickSizes, Flows: QuickFlows, Repeats: QuickRepeats,
		Duration: QuickDuration, Warmup: QuickWarmup, Profile: true, Binary: "/bin/true", Quick: true}
	// --quick must finish in under 2 minutes with its setup (daemon starts,
	// flows established, round trips): the measuring alone well under.
	if est := quick.Estimate(); est > 80e9 {
		t.Errorf("quick run measures for %s", est)
	}
}

func TestFillCosts(t *testing.T) {
	r := &Report{Baseline: ConfigKernelMasq, Settings: Settings{
		Configs: []string{ConfigVeth, ConfigXDPRedirect, ConfigKernelMasq}, FrameSizes: []int{64}, Flows: []int{1, 1000},
	}, Cells: []Cell{
		cell(ConfigVeth, 64, 1, []float64{2, 2, 2}, []float64{2, 2, 2}),
		cell(ConfigXDPRedirect, 64, 1, []float64{1.6, 1.6, 1.6}, []float64{1.6, 1.6, 1.6}),
		cell(ConfigKernelMasq, 64, 1, []float64{0.5, 0.4, 1}, []float64{2, 2, 2}),
		cell(ConfigKernelMasq, 64, 1000, []float64{0.5}, []float64{2}), // no veth cell at 1k flows
	}}
	r.fillCosts()
	if c := r.Cell(ConfigVeth, 64, 1); c.RouterNs != nil {
		t.Errorf("veth-direct has a router cost: %+v", c.RouterNs)
	}
	// 1/1.6 Mpps - 1/2 Mpps = 625 - 500 ns.
	if c := r.Cell(ConfigXDPRedirect, 64, 1); c.RouterNs == nil || *c.RouterNs != (Summary{125, 125, 125}) {
		t.Errorf("xdp-redirect cost %+v, want 125 ns", c.RouterNs)
	}
	// Median 0.5 Mpps: 1500 ns; the fastest repeat (1 Mpps) gives the
	// smallest cost, 500 ns; the slowest (0.4) the largest, 2000 ns.
	if c := r.Cell(ConfigKernelMasq, 64, 1); c.RouterNs == nil || *c.RouterNs != (Summary{1500, 500, 2000}) {
		t.Errorf("kernel-masq cost %+v, want 1500 (500..2000)", c.RouterNs)
	}
	if c := r.Cell(ConfigKernelMasq, 64, 1000); c.RouterNs != nil {
		t.Errorf("cost without a veth-direct cell: %+v", c.RouterNs)
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"router ns/pkt", "1500", "500..2000"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestTCPAndLatencyTables(t *testing.T) {
	r := &Report{Baseline: ConfigKernelMasq, Settings: Settings{Repeats: 2}, TCP: []TCPCell{
		{Config: ConfigKernelMasq, Label: "kernel + masq", HostOffloads: HostOffloadsDefault, Gbps: Summary{10, 9, 11}, Samples: []float64{9, 11}},
		{Config: ConfigOffloadXDP, Label: "offload xdp", HostOffloads: HostOffloadsDefault, AttachedAs: "xdp", Error: "stalled: no data for 1s after 11000 bytes"},
		{Config: ConfigOffloadTC, Label: "offload tc", HostOffloads: HostOffloadsDefault, AttachedAs: "tc", Gbps: Summary{12, 12, 12}, Samples: []float64{12, 10.5}},
		{Config: ConfigOffloadXDP, Label: "offload xdp", HostOffloads: HostOffloadsDefault,
			Refused: refusal("setup: fastpath daemon (offload-xdp): daemon exited\nfastpath: attach: xdp cannot be correct on r0: veth peer g0 sends partial checksums")},
	}, Latency: []LatencyCell{
		{Config: ConfigKernelMasq, Label: "kernel + masq", Idle: &RTT{Samples: 100, P50: 50, P99: 90, P999: 120}, Loaded: &RTT{Samples: 100, P50: 70, P99: 300, P999: 900}, LoadMpps: 0.3},
		{Config: ConfigOffloadXDP, Label: "offload xdp", Error: "the first 20 requests went unanswered"},
	}}
	if v, ok := r.TCPRatio(&r.TCP[2]); !ok || v != 1.2 {
		t.Errorf("tcp ratio %v %v, want 1.2", v, ok)
	}
	if _, ok := r.TCPRatio(&r.TCP[1]); ok {
		t.Error("a failed tcp cell has a ratio")
	}
	// Round by round: 12 >= 9, 10.5 < 11.
	if n, of, ok := r.TCPRoundsAhead(&r.TCP[2]); !ok || n != 1 || of != 2 {
		t.Errorf("rounds ahead %d/%d %v, want 1/2", n, of, ok)
	}
	if _, _, ok := r.TCPRoundsAhead(&r.TCP[1]); ok {
		t.Error("a failed tcp cell has rounds ahead")
	}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if r.TCP[3].Refused != "attach: xdp cannot be correct on r0: veth peer g0 sends partial checksums" {
		t.Errorf("refusal parsed as %q", r.TCP[3].Refused)
	}
	for _, want := range []string{"Bulk TCP", "1.20x", "1/2", "rounds ahead", "FAIL", "stalled: no data", "refused", "cannot be correct on r0", "round trips", "900", "0.30", "went unanswered"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

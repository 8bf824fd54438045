package main

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
)

// topSamples are two samples 2 s apart with round rates (see the comments).
func topSamples() (prev, cur topSample) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.Local)
	ap := netip.MustParseAddrPort
	tcp := api.Flow{Proto: "tcp", Family: "ipv4", Direction: "original",
		In:  api.Tuple{Src: ap("10.0.0.2:40000"), Dst: ap("198.18.2.1:443")},
		Out: api.Tuple{Src: ap("198.18.2.254:40000"), Dst: ap("198.18.2.1:443")},
		NAT: "snat", Ingress: "lan0", Egress: "wan0", Packets: 10, Bytes: 1000}
	reply := api.Flow{Proto: "tcp", Family: "ipv4", Direction: "reply",
		In:  api.Tuple{Src: ap("198.18.2.1:443"), Dst: ap("198.18.2.254:40000")},
		Out: api.Tuple{Src: ap("198.18.2.1:443"), Dst: ap("10.0.0.2:40000")},
		NAT: "snat", Ingress: "wan0", Egress: "lan0", Packets: 5, Bytes: 500}
	udp := api.Flow{Proto: "udp", Family: "ipv6", Direction: "original",
		In:      api.Tuple{Src: ap("[fd00::2]:5353"), Dst: ap("[fd00:2::1]:53")},
		Out:     api.Tuple{Src: ap("[fd00::2]:5353"), Dst: ap("[fd00:2::1]:53")},
		Ingress: "r0", Egress: "r1"}

	prev = topSample{at: t0,
		stats: &api.Stats{Interfaces: []api.InterfaceStats{
			{Name: "wan0", Ifindex: 2,
				Forwarded:   api.Counter{Packets: 1_000_000, Bytes: 800_000_000},
				Passed:      api.Counter{Packets: 10_000, Bytes: 1_000_000},
				PassReasons: map[string]uint64{"no_conntrack": 9000, "icmp": 1000, "ttl": 0}},
			{Name: "lan0", Ifindex: 3,
				Forwarded:   api.Counter{Packets: 500, Bytes: 50_000},
				PassReasons: map[string]uint64{"no_conntrack": 0}},
		}},
		flows: &api.Flows{Capacity: 1024, Flows: []api.Flow{tcp, reply}},
	}

	tcp.Packets, tcp.Bytes = 1510, 2_001_000 // +1500 pkts, +2 MB: 750 pkt/s, 8 Mbit/s
	udp.Packets, udp.Bytes = 100, 50_000     // new: 50 pkt/s, 200 kbit/s
	cur = topSample{at: t0.Add(2 * time.Second),
		stats: &api.Stats{Interfaces: []api.InterfaceStats{
			{Name: "wan0", Ifindex: 2,
				// +200k pkts, +160 MB: 100 kpps, 640 Mbit/s
				Forwarded: api.Counter{Packets: 1_200_000, Bytes: 960_000_000},
				// +2000 pkts, +200 kB: 1 kpps, 800 kbit/s
				Passed:      api.Counter{Packets: 12_000, Bytes: 1_200_000},
				PassReasons: map[string]uint64{"no_conntrack": 10_800, "icmp": 1200, "ttl": 0}},
			{Name: "lan0", Ifindex: 3,
				// +100k pkts, +150 MB: 50 kpps, 600 Mbit/s; nothing passed
				Forwarded:   api.Counter{Packets: 100_500, Bytes: 150_050_000},
				PassReasons: map[string]uint64{"no_conntrack": 0}},
			{Name: "r9", Ifindex: 9, // new: no rate yet
				Forwarded: api.Counter{Packets: 5, Bytes: 500}},
		}},
		flows: &api.Flows{Capacity: 1024, Flows: []api.Flow{reply, udp, tcp}},
	}
	return prev, cur
}

func TestRenderTop(t *testing.T) {
	prev, cur := topSamples()
	got := renderTop(topView{socket: "/run/fp.sock", interval: 2 * time.Second}, prev, cur)
	want := `fastpath top  12:00:02  every 2s  /run/fp.sock

offload 99.3%: fastpath forwarded 150k pkt/s, the kernel got 1.00k pkt/s

INTERFACE  FWD PKT/S  FWD BIT/S  KERNEL PKT/S  KERNEL BIT/S  OFFLOAD
wan0            100k       640M         1.00k          800k    99.0%
lan0           50.0k       600M             0             0   100.0%
r9                 -          -             -             -        -
total           150k      1.24G         1.00k          800k    99.3%

PASSED TO KERNEL  PKT/S
no_conntrack        900
icmp                100

TOP FLOWS by bytes: 2 of 3 cached flows forwarded traffic
PROTO  IN                                OUT                                   NAT   INGRESS  EGRESS  BIT/S  PKT/S
tcp    10.0.0.2:40000 -> 198.18.2.1:443  198.18.2.254:40000 -> 198.18.2.1:443  snat  lan0     wan0    8.00M    750
udp    [fd00::2]:5353 -> [fd00:2::1]:53  -                                     -     r0       r1       200k     50
`
	if got != want {
		t.Errorf("frame:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderTopNarrow(t *testing.T) {
	prev, cur := topSamples()
	got := renderTop(topView{socket: "/run/fp.sock", interval: time.Second, width: 20}, prev, cur)
	for line := range strings.Lines(got) {
		if len(strings.TrimSuffix(line, "\n")) > 20 {
			t.Errorf("line longer than the terminal: %q", line)
		}
	}
	if !strings.Contains(got, "\nINTERFACE  FWD PKT/S\nwan0            100k\n") {
		t.Errorf("frame cut wrongly:\n%s", got)
	}
}

// The daemon restarted between samples: its counters went backwards.
func TestRenderTopCountersReset(t *testing.T) {
	prev, cur := topSamples()
	prev.stats, cur.stats = cur.stats, prev.stats
	cur.stats.Interfaces = cur.stats.Interfaces[:1]
	cur.flows, cur.flowsErr = nil, errors.New("daemon: no interface in offload mode (HTTP 500)")
	got := renderTop(topView{socket: "s", interval: time.Second}, prev, cur)
	for _, want := range []string{
		"\noffload -: no rates yet (new interfaces, or the daemon restarted)\n",
		"\nflows: daemon: no interface in offload mode (HTTP 500)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("frame lacks %q:\n%s", want, got)
		}
	}
	for _, row := range []string{"wan0 - - - - -", "total - - - - -"} {
		if !hasRow(got, row) {
			t.Errorf("frame lacks the row %q:\n%s", row, got)
		}
	}
	if strings.Contains(got, "PASSED TO KERNEL") {
		t.Errorf("reasons without rates:\n%s", got)
	}
}

func TestRenderTopIdle(t *testing.T) {
	prev, _ := topSamples()
	cur := prev
	cur.at = prev.at.Add(time.Second)
	got := renderTop(topView{socket: "s", interval: time.Second}, prev, cur)
	for _, want := range []string{
		"\noffload -: no packets arrived\n",
		"\nTOP FLOWS: none of the 2 cached flows forwarded traffic\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("frame lacks %q:\n%s", want, got)
		}
	}
	if !hasRow(got, "total 0 0 0 0 -") || !hasRow(got, "lan0 0 0 0 0 -") {
		t.Errorf("idle rows:\n%s", got)
	}
	cur.stats = &api.Stats{}
	if got := renderTop(topView{}, prev, cur); !strings.Contains(got, "\nno interfaces served by the datapath\n") {
		t.Errorf("no interfaces:\n%s", got)
	}
}

// hasRow reports whether a line of frame has exactly the blank-separated
// fields of row.
func hasRow(frame, row string) bool {
	for line := range strings.Lines(frame) {
		if strings.Join(strings.Fields(line), " ") == row {
			return true
		}
	}
	return false
}

func TestSI(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 0.4: "0", 1: "1", 999: "999", 999.4: "999", 999.5: "1.00k", 1234: "1.23k",
		9994: "9.99k", 9995: "10.0k", 45_600_000: "45.6M", 99_949: "99.9k", 99_950: "100k",
		999_499: "999k", 999_500: "1.00M", 1.24e9: "1.24G", 789e9: "789G", 5e15: "5000T", -3: "0",
	} {
		if got := si(v); got != want {
			t.Errorf("si(%v) = %q, want %q", v, got, want)
		}
	}
}

// counterBackend's counters grow at each /v1/stats request.
func counterBackend() *fakeBackend {
	var mu sync.Mutex
	n := uint64(0)
	return &fakeBackend{
		statsFn: func() *api.Stats {
			mu.Lock()
			defer mu.Unlock()
			n++
			return &api.Stats{Interfaces: []api.InterfaceStats{{Name: "r0", Ifindex: 3,
				Forwarded:   api.Counter{Packets: 1000 * n, Bytes: 1_000_000 * n},
				Passed:      api.Counter{Packets: 10 * n, Bytes: 1000 * n},
				PassReasons: map[string]uint64{"no_neigh": 10 * n}}}}
		},
		flowsFn: func() (*api.Flows, error) { return testFlows(), nil },
	}
}

func TestTop(t *testing.T) {
	sock := serve(t, counterBackend())
	code, out, errOut := run(t, "top", "--socket", sock, "--count", "2", "--interval", "100ms")
	if code != 0 || errOut != "" {
		t.Fatalf("top: code %d, stderr %q\n%s", code, errOut, out)
	}
	frames := strings.Split(out, "\nfastpath top  ")
	if len(frames) != 2 || !strings.HasPrefix(out, "fastpath top  ") {
		t.Fatalf("want 2 frames:\n%s", out)
	}
	for i, f := range frames {
		for _, want := range []string{
			"every 100ms  " + sock + "\n",
			"\noffload 99.0%: fastpath forwarded ",
			"\nINTERFACE  FWD PKT/S  FWD BIT/S  KERNEL PKT/S  KERNEL BIT/S  OFFLOAD\n",
			"\nr0  ", "\ntotal  ",
			"\nPASSED TO KERNEL  PKT/S\nno_neigh  ",
			"\nTOP FLOWS: none of the 3 cached flows forwarded traffic\n",
		} {
			if !strings.Contains(f, want) {
				t.Errorf("frame %d lacks %q:\n%s", i, want, f)
			}
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("terminal codes in output to a pipe:\n%q", out)
	}
}

func TestTopOnce(t *testing.T) {
	sock := serve(t, counterBackend())
	code, out, errOut := run(t, "top", "--socket", sock, "--once", "--interval", "100ms")
	if code != 0 || errOut != "" || strings.Count(out, "fastpath top  ") != 1 {
		t.Errorf("top --once: code %d, stderr %q\n%s", code, errOut, out)
	}
}

// On a terminal, frames are redrawn in place and the cursor comes back
// when the view ends (Ctrl-C here).
func TestTopTerminal(t *testing.T) {
	sock := serve(t, counterBackend())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c := &cli{code: make(chan int, 1)}
	done := make(chan error, 1)
	o := topOptions{socket: sock, interval: minTopInterval}
	go func() { done <- runTop(ctx, api.NewClient(sock), o, &c.out, true) }()
	c.waitOutput(t, ansiHome+"fastpath top  ")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runTop: %v", err)
		}
	case <-time.After(waitTime):
		t.Fatal("runTop still running after Ctrl-C")
	}
	out := c.out.String()
	if !strings.HasPrefix(out, ansiHideCursor+ansiClearScreen) || !strings.HasSuffix(out, ansiClearBelow+ansiShowCursor) {
		t.Errorf("cursor not hidden then restored: %q", out)
	}
	if !strings.Contains(out, "\nINTERFACE  FWD PKT/S  FWD BIT/S  KERNEL PKT/S  KERNEL BIT/S  OFFLOAD"+ansiClearLine+"\n") {
		t.Errorf("lines not cleared to their end: %q", out)
	}
}

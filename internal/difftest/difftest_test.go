package difftest

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFixedScriptsParseAndRoundTrip(t *testing.T) {
	names := map[string]bool{}
	for _, s := range Fixed() {
		if names[s.Name] {
			t.Errorf("fixed script %s twice", s.Name)
		}
		names[s.Name] = true
		roundTrip(t, s)
	}
	for i := 1; i <= 8; i++ {
		found := false
		for n := range names {
			found = found || strings.HasPrefix(n, "case"+string(rune('0'+i))+"-")
		}
		if !found {
			t.Errorf("issue 9 case %d has no fixed script", i)
		}
	}
}

func roundTrip(t *testing.T, s *Script) {
	t.Helper()
	text := s.Format()
	back, err := Parse(text)
	if err != nil {
		t.Fatalf("%s: parse of its own format: %v\n%s", s.Name, err, text)
	}
	if !reflect.DeepEqual(s, back) {
		t.Errorf("%s: round trip differs:\n%s\nvs\n%s", s.Name, text, back.Format())
	}
}

func TestGenerateDeterministicAndValid(t *testing.T) {
	kinds := map[string]bool{}
	for seed := uint64(1); seed <= 300; seed++ {
		a, b := Generate(seed), Generate(seed)
		if a.Format() != b.Format() {
			t.Fatalf("seed %d: two scripts:\n%s\n%s", seed, a.Format(), b.Format())
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, a.Format())
		}
		roundTrip(t, a)
		for _, st := range a.Steps {
			kinds[st.Cmd.Argv[0]+" "+st.Cmd.Argv[1]] = true
		}
	}
	// The generator reaches every tool of the catalogue.
	for _, k := range []string{"nft add", "nft delete", "ip -4", "ip -6", "ip link", "sysctl -qw", "conntrack -U", "conntrack -D", "conntrack -F", "tc qdisc"} {
		if !kinds[k] {
			t.Errorf("no generated script in 300 seeds has a step %q", k)
		}
	}
	if Generate(1).Format() == Generate(2).Format() {
		t.Error("seeds 1 and 2 give the same script")
	}
}

func TestParseErrors(t *testing.T) {
	for _, text := range []string{
		"flow a udp 4 200\nduration 1s\n",                                   // no name
		"script x\nduration 1s\n",                                           // no flows
		"script x\nduration 1s\nflow a sctp 4 200\n",                        // proto
		"script x\nduration 1s\nflow a udp 5 200\n",                         // family
		"script x\nduration 1s\nflow a udp 4 8\n",                           // size
		"script x\nduration 1s\nflow a udp 4 200\nat 2s event rtr true\n",   // past the end
		"script x\nduration 1s\nflow a udp 4 200\nat 1s soon rtr true\n",    // bound
		"script x\nduration 1s\nflow a udp 4 200\nat 1s event host true\n",  // namespace
		"script x\nduration 1s\nflow a udp 4 200\nat 1s event sink2 true\n", // sink2 without r2
		"script x\nduration 1s\nflow a udp 4 200\nbogus\n",
	} {
		if _, err := Parse(text); err == nil {
			t.Errorf("parse accepted:\n%s", text)
		}
	}
}

// synthetic builds a run of n packets, one per Interval, delivered with hdr
// unless lost(i), and step times at the given offsets.
func synthetic(mode string, n int, hdr func(i int) Header, lost func(i int) bool, steps ...time.Duration) *Result {
	r := &Result{Mode: mode}
	f := FlowResult{Name: "u4"}
	for i := range n {
		p := Packet{Sent: time.Duration(i) * Interval}
		if !lost(i) {
			p.Delivered, p.Arrived, p.Hdr = true, p.Sent+time.Millisecond, hdr(i)
		}
		f.Packets = append(f.Packets, p)
	}
	r.Flows = []FlowResult{f}
	for _, at := range steps {
		r.Steps = append(r.Steps, StepTimes{Start: at, Done: at + 5*time.Millisecond})
	}
	return r
}

func testScript(steps ...Step) *Script {
	return &Script{Name: "self", Duration: 2 * time.Second, Flows: []Flow{{Name: "u4", Proto: "udp", Size: 200}}, Steps: steps}
}

var (
	natted = Header{Host: "sink", Src: netip.MustParseAddr("198.18.2.254"), Dst: netip.MustParseAddr("198.18.2.1"), Sport: 41000, Dport: 5000, TTL: 63}
	never  = func(int) bool { return false }
	same   = func(int) Header { return natted }
)

// TestCompareSelf: the comparator accepts identical runs and differences
// inside a step's window, and fails a synthetic divergence beyond it: a
// flow that goes on after the change in the fastpath run.
func TestCompareSelf(t *testing.T) {
	s := testScript(Step{At: 500 * time.Millisecond, Cmd: Cmd{NS: "rtr", Argv: []string{"ip", "rule", "add"}}})
	stopAt := func(at time.Duration) func(int) bool {
		return func(i int) bool { return time.Duration(i)*Interval >= at }
	}
	base := synthetic("kernel", 200, same, stopAt(505*time.Millisecond), 500*time.Millisecond)

	// Stopped 80 ms later than the kernel: inside the 100 ms bound.
	ok := synthetic("fastpath", 200, same, stopAt(585*time.Millisecond), 500*time.Millisecond)
	if c := Compare(s, base, ok); len(c.Divergences) != 0 {
		t.Errorf("a stop within the bound diverges:\n%s", c.Report)
	}

	// Stopped 400 ms late: beyond the bound.
	late := synthetic("fastpath", 200, same, stopAt(900*time.Millisecond), 500*time.Millisecond)
	c := Compare(s, base, late)
	if len(c.Divergences) == 0 {
		t.Fatalf("a flow stopped 400 ms late does not diverge:\n%s", c.Report)
	}
	for _, want := range []string{"kernel: lost", "fastpath: sink 198.18.2.254:41000->198.18.2.1:5000 ttl 63 dscp 0", "settled"} {
		if !strings.Contains(c.Report, want) {
			t.Errorf("report lacks %q:\n%s", want, c.Report)
		}
	}
	t.Logf("the report of a synthetic divergence:\n%s", c.Report)

	// Never stopped.
	if c := Compare(s, base, synthetic("fastpath", 200, same, never, 500*time.Millisecond)); len(c.Divergences) == 0 {
		t.Errorf("a flow that never stopped does not diverge:\n%s", c.Report)
	}
}

// TestCompareHeaders: after the window, a header that differs (DSCP a
// netdev chain set, a source address NAT set) is a divergence even when
// every packet arrives in both runs.
func TestCompareHeaders(t *testing.T) {
	s := testScript(Step{At: 500 * time.Millisecond, Cmd: Cmd{NS: "rtr", Argv: []string{"nft", "add"}}})
	rewritten := func(i int) Header {
		h := natted
		if time.Duration(i)*Interval >= 510*time.Millisecond {
			h.DSCP = 8
		}
		return h
	}
	base := synthetic("kernel", 150, rewritten, never, 500*time.Millisecond)
	run := synthetic("fastpath", 150, same, never, 500*time.Millisecond)
	c := Compare(s, base, run)
	if len(c.Divergences) == 0 || !strings.Contains(c.Report, "dscp 8") {
		t.Fatalf("a DSCP rewrite missing in one run does not diverge:\n%s", c.Report)
	}
	moved := func(i int) Header {
		h := natted
		h.Host = "sink2"
		return h
	}
	if c := Compare(s, synthetic("kernel", 150, same, never), synthetic("fastpath", 150, moved, never)); len(c.Divergences) == 0 {
		t.Errorf("a flow at another egress does not diverge:\n%s", c.Report)
	}
}

// TestCompareNoise: a few isolated losses in one run are noise; a loss
// burst (a stop) is not.
func TestCompareNoise(t *testing.T) {
	s := testScript()
	base := synthetic("kernel", 200, same, never)
	some := synthetic("fastpath", 200, same, func(i int) bool { return i == 50 || i == 120 })
	if c := Compare(s, base, some); len(c.Divergences) != 0 {
		t.Errorf("two isolated losses diverge:\n%s", c.Report)
	}
	burst := synthetic("fastpath", 200, same, func(i int) bool { return i >= 50 && i < 60 })
	if c := Compare(s, base, burst); len(c.Divergences) == 0 {
		t.Errorf("ten packets lost in a row do not diverge:\n%s", c.Report)
	}
	many := synthetic("fastpath", 200, same, func(i int) bool { return i%10 == 5 })
	if c := Compare(s, base, many); len(c.Divergences) == 0 {
		t.Errorf("20 isolated losses in 200 do not diverge:\n%s", c.Report)
	}
}

// TestCompareShaped: under a shaper, delivery is compared by count.
func TestCompareShaped(t *testing.T) {
	s := testScript(
		Step{At: 300 * time.Millisecond, Shape: 1, Cmd: Cmd{NS: "rtr", Argv: []string{"tc", "qdisc"}}},
		Step{At: 1500 * time.Millisecond, Shape: -1, Cmd: Cmd{NS: "rtr", Argv: []string{"tc", "qdisc"}}})
	shaped := func(i int) bool {
		t := time.Duration(i) * Interval
		return t > 400*time.Millisecond && t < 1500*time.Millisecond
	}
	base := synthetic("kernel", 200, same, func(i int) bool { return shaped(i) && i%4 != 0 }, 300*time.Millisecond, 1500*time.Millisecond)
	close := synthetic("fastpath", 200, same, func(i int) bool { return shaped(i) && i%4 != 1 }, 300*time.Millisecond, 1500*time.Millisecond)
	if c := Compare(s, base, close); len(c.Divergences) != 0 {
		t.Errorf("the same rate with other packets diverges:\n%s", c.Report)
	}
	unshaped := synthetic("fastpath", 200, same, never, 300*time.Millisecond, 1500*time.Millisecond)
	if c := Compare(s, base, unshaped); len(c.Divergences) == 0 {
		t.Errorf("a shaper that did not hold does not diverge:\n%s", c.Report)
	}
}

// TestCompareRevalBound: a change without an event may take the
// revalidation interval; beyond it the runs must agree.
func TestCompareRevalBound(t *testing.T) {
	s := testScript(Step{At: 200 * time.Millisecond, Bound: BoundReval, Effect: 300 * time.Millisecond, Cmd: Cmd{NS: "rtr", Argv: []string{"nft", "add"}}})
	s.Duration = 3 * time.Second
	stopAt := func(at time.Duration) func(int) bool {
		return func(i int) bool { return time.Duration(i)*Interval >= at }
	}
	base := synthetic("kernel", 300, same, stopAt(500*time.Millisecond), 200*time.Millisecond)
	if c := Compare(s, base, synthetic("fastpath", 300, same, stopAt(1400*time.Millisecond), 200*time.Millisecond)); len(c.Divergences) != 0 {
		t.Errorf("a stop 0.9 s after an expiry diverges:\n%s", c.Report)
	}
	if c := Compare(s, base, synthetic("fastpath", 300, same, stopAt(2000*time.Millisecond), 200*time.Millisecond)); len(c.Divergences) == 0 {
		t.Errorf("a stop 1.5 s after an expiry does not diverge:\n%s", c.Report)
	}
}

func TestParseFrame(t *testing.T) {
	// Ethernet + IPv4 (DSCP 8, TTL 63) + UDP 41000 -> 5000 + our header.
	b := make([]byte, 14+20+8+headerLen)
	b[12], b[13] = 0x08, 0x00
	ip := b[14:]
	ip[0], ip[1], ip[8], ip[9] = 0x45, 8<<2, 63, 17
	ip[2], ip[3] = 0, byte(20+8+headerLen)
	copy(ip[12:], []byte{198, 18, 2, 254})
	copy(ip[16:], []byte{198, 18, 2, 1})
	udp := ip[20:]
	udp[0], udp[1], udp[2], udp[3] = 41000>>8, 41000&0xff, 5000>>8, 5000&0xff
	putHeader(udp[8:], 3, kindData, 77)
	s, ok := parseFrame(b)
	if !ok || s.flow != 3 || s.seq != 77 || s.hdr.DSCP != 8 || s.hdr.TTL != 63 || s.hdr.Sport != 41000 || s.hdr.Dport != 5000 ||
		s.hdr.Src != netip.MustParseAddr("198.18.2.254") {
		t.Errorf("parse: ok %v, %+v", ok, s)
	}
	// A non-first fragment carries no header: skipped.
	ip[6], ip[7] = 0, 10
	if _, ok := parseFrame(b); ok {
		t.Error("a non-first fragment was parsed")
	}
}

// TestKnownDivergences: no fixed or generated script is skipped as a
// known divergence (netdev chains, the last one, are followed now).
func TestKnownDivergences(t *testing.T) {
	for _, s := range Fixed() {
		if s.Known != "" {
			t.Errorf("%s: known %q", s.Name, s.Known)
		}
	}
	for seed := uint64(1); seed <= 100; seed++ {
		if s := Generate(seed); s.Known != "" {
			t.Errorf("seed %d: known %q\n%s", seed, s.Known, s.Format())
		}
	}
}

// TestCompareSlowTransit: on a loaded machine packets may sit in a backlog
// and meet a change made after they were sent; the window before the
// change grows with the transit times seen, not beyond.
func TestCompareSlowTransit(t *testing.T) {
	s := testScript(Step{At: 700 * time.Millisecond, Cmd: Cmd{NS: "rtr", Argv: []string{"nft", "add"}}})
	stopAt := func(at time.Duration) func(int) bool {
		return func(i int) bool { return time.Duration(i)*Interval >= at }
	}
	base := synthetic("kernel", 150, same, stopAt(705*time.Millisecond), 700*time.Millisecond)
	run := synthetic("fastpath", 150, same, stopAt(620*time.Millisecond), 700*time.Millisecond)
	if c := Compare(s, base, run); len(c.Divergences) == 0 {
		t.Fatalf("packets lost 80 ms before the change with fast transit do not diverge:\n%s", c.Report)
	}
	// The same losses when the packets before the change took 90 ms to
	// arrive: they met the change in the router.
	for i := range run.Flows[0].Packets {
		p := &run.Flows[0].Packets[i]
		if p.Delivered && p.Sent > 400*time.Millisecond {
			p.Arrived = p.Sent + 90*time.Millisecond
		}
	}
	if c := Compare(s, base, run); len(c.Divergences) != 0 {
		t.Errorf("packets delayed 90 ms and lost at the change diverge:\n%s", c.Report)
	}
}

// TestCompareTCPLossIsNoNoise: TCP retransmits, so one lost record or
// connection (a reset) diverges even where a UDP loss would be noise.
func TestCompareTCPLossIsNoNoise(t *testing.T) {
	s := testScript()
	s.Flows[0].Proto = "tcpconn"
	base := synthetic("kernel", 100, same, never)
	run := synthetic("fastpath", 100, same, func(i int) bool { return i == 40 })
	if c := Compare(s, base, run); len(c.Divergences) == 0 {
		t.Errorf("a reset TCP connection does not diverge:\n%s", c.Report)
	}
}

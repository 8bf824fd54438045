package difftest

import (
	"net"
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
	for i := 1; i <= 5; i++ {
		found := false
		for n := range names {
			found = found || strings.HasPrefix(n, "i16-case"+string(rune('0'+i))+"-")
		}
		if !found {
			t.Errorf("issue 16 case %d has no fixed script", i)
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
		// crafted packets
		"script x\nduration 1s\nflow a udp 4 200\nat 1s craft b orig\n",                 // no such flow
		"script x\nduration 1s\nflow a udp 4 200\nat 1s craft a sideways\n",             // direction
		"script x\nduration 1s\nflow a udp 4 200\nat 1s craft a orig flags=R\n",         // flags on udp
		"script x\nduration 1s\nflow a udp 4 200\nat 1s craft a orig seq=+5\n",          // seq on udp
		"script x\nduration 1s\nflow a icmp 4 64\nat 1s craft a orig\n",                 // icmp
		"script x\nduration 1s\nflow a tcpconn 4 200\nat 1s craft a orig\n",             // short connections
		"script x\nduration 1s\nflow a tcp 4 200\nat 1s craft a orig flags=RX\n",        // flag letter
		"script x\nduration 1s\nflow a tcp 4 200\nat 1s craft a orig flags=RR\n",        // flag twice
		"script x\nduration 1s\nflow a tcp 4 200\nat 1s craft a orig seq=+4294967296\n", // beyond 32 bits
		"script x\nduration 1s\nflow a tcp 4 200\nat 1s craft a orig trailer=2000\n",    // trailer
		"script x\nduration 1s\nflow a tcp 4 200\nat 1s craft a orig badsum=1\n",        // badsum value
		"script x\nduration 1s\nflow a tcp 4 200\nat 1s craft a orig ttl=3\n",           // option
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
	// A crafted datagram with 30 bytes after the IP datagram.
	ip[6], ip[7] = 0, 0
	putHeader(udp[8:], 3, kindCrafted, 5)
	s, ok = parseFrame(append(b, make([]byte, 30)...))
	if !ok || !s.crafted || s.seq != 5 || s.trailer != 30 {
		t.Errorf("crafted datagram: ok %v, %+v", ok, s)
	}
	// A TCP reset that is not crafted (the router's own answer) is
	// skipped; a crafted one is read.
	tcp := make([]byte, 14+20+20)
	copy(tcp, b[:14+20])
	tcp[14+9] = 6
	tcp[14+2], tcp[14+3] = 0, 40
	tcp[14+20+12], tcp[14+20+13] = 5<<4, FlagRST
	if _, ok := parseFrame(tcp); ok {
		t.Error("a TCP reset was parsed")
	}
	tcp = append(tcp, make([]byte, headerLen)...)
	tcp[14+3] = 40 + headerLen
	putHeader(tcp[14+40:], 1, kindCrafted, 9)
	if s, ok := parseFrame(tcp); !ok || !s.crafted || s.seq != 9 || s.flow != 1 || s.tcpFlags != FlagRST || s.tcpLen != headerLen {
		t.Errorf("crafted reset: ok %v, %+v", ok, s)
	}
}

// TestKnownDivergences: no generated script, and no fixed one but those
// listed (docs/offload.md says why), is skipped as a known divergence
// (netdev chains, the last of issue 9, are followed now).
func TestKnownDivergences(t *testing.T) {
	known := map[string]bool{"i16-case1b-forged-reset-no-nat": true}
	for _, s := range Fixed() {
		if (s.Known != "") != known[s.Name] {
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

// TestCraftParse: a crafted step's options are read back as written, in
// one canonical form.
func TestCraftParse(t *testing.T) {
	s, err := Parse("script x\nduration 1s\nflow a tcp 6 200\nflow u udp 4 200\n" +
		"at 500ms craft a reply flags=AF seq=+2147483648 ack=+7 badsum trailer=20\n" +
		"at 600ms craft a orig flags=none\nat 700ms craft u orig trailer=320\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []Craft{
		{Flow: "a", Reply: true, Flags: "FA", SeqOffset: 1 << 31, AckOffset: 7, BadSum: true, Trailer: 20},
		{Flow: "a", Flags: "none"},
		{Flow: "u", Trailer: 320},
	}
	for i, st := range s.Steps {
		if st.Craft == nil || *st.Craft != want[i] {
			t.Errorf("step %d: %+v, want %+v", i, st.Craft, want[i])
		}
	}
	if got := want[0].TCPFlags(); got != FlagFIN|FlagACK {
		t.Errorf("flags FA: %#x", got)
	}
	if got := want[1].TCPFlags(); got != 0 {
		t.Errorf("flags none: %#x", got)
	}
	if got := want[2].TCPFlags(); got != FlagACK {
		t.Errorf("default flags: %#x, want a plain ACK", got)
	}
	roundTrip(t, s)
}

// TestCompareCrafted: a crafted packet must meet the same fate in both
// runs, header and trailer included; its step opens no tolerance window
// for the flows.
func TestCompareCrafted(t *testing.T) {
	s := testScript(Step{At: 500 * time.Millisecond, Craft: &Craft{Flow: "u4", Trailer: 320}})
	base := synthetic("kernel", 150, same, never, 500*time.Millisecond)
	base.Crafted = []CraftResult{{Step: 0, Delivered: true, Hdr: natted}}
	run := synthetic("fastpath", 150, same, never, 500*time.Millisecond)
	run.Crafted = []CraftResult{{Step: 0, Delivered: true, Hdr: natted}}
	if c := Compare(s, base, run); len(c.Divergences) != 0 {
		t.Errorf("the same fate diverges:\n%s", c.Report)
	}
	run.Crafted[0].Trailer = 320
	c := Compare(s, base, run)
	if len(c.Divergences) != 1 || !strings.Contains(c.Report, "trailer 320") {
		t.Errorf("a trailer left on does not diverge once:\n%s", c.Report)
	}
	run.Crafted[0] = CraftResult{Step: 0}
	if c := Compare(s, base, run); len(c.Divergences) != 1 || !strings.Contains(c.Report, "fastpath: lost") {
		t.Errorf("a crafted packet lost in one run does not diverge:\n%s", c.Report)
	}
	run.Crafted = nil
	if c := Compare(s, base, run); len(c.Divergences) != 1 {
		t.Errorf("a crafted packet missing from a run does not diverge:\n%s", c.Report)
	}
	// Packets lost right after the craft: no window excuses them.
	run = synthetic("fastpath", 150, same, func(i int) bool { return i >= 50 && i < 55 }, 500*time.Millisecond)
	run.Crafted = base.Crafted
	if c := Compare(s, base, run); len(c.Divergences) == 0 {
		t.Errorf("a loss burst at a crafted packet does not diverge:\n%s", c.Report)
	}
}

// TestCraftBuildParse: what the crafter builds, the capture reads back:
// the step, addresses and ports, numbers from the sender's segments plus
// the offsets, a wrong checksum, the trailer.
func TestCraftBuildParse(t *testing.T) {
	gen4, sink4 := netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("198.18.2.1")
	gen6, sink6 := netip.MustParseAddr("fd00:1::1"), netip.MustParseAddr("fd00:2::1")
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	end := craftEnd{src: mac, dst: mac}
	for _, v6 := range []bool{false, true} {
		f := Flow{Name: "t", Proto: "tcp", V6: v6, Index: 2}
		nat, peer := netip.MustParseAddr("198.18.2.254"), gen4
		if v6 {
			nat, peer = netip.MustParseAddr("fd00:2::fe"), gen6
		}
		// At the sink: gen's segments (seq 1000 + 200 bytes, then a
		// retransmission of the first 100), after NAT. At gen: the
		// sink's ACKs.
		sink := &capture{host: "sink", got: []seen{
			{tcp: true, flow: 2, tcpSeq: 1000, tcpLen: 200, tcpAck: 5000, tcpWin: 300, hdr: Header{Src: nat, Sport: 41002}},
			{tcp: true, flow: 2, tcpSeq: 1000, tcpLen: 100, tcpAck: 5000, tcpWin: 301, hdr: Header{Src: nat, Sport: 41002}},
		}}
		gen := &capture{host: "gen", got: []seen{{tcp: true, flow: 2, tcpSeq: 5000, tcpAck: 1200, tcpWin: 400}}}
		c := &crafter{sink: sink, gen: gen, orig: end, reply: end, gen4: gen4, gen6: gen6, sink4: sink4, sink6: sink6}

		frame, _, err := c.build(&Craft{Flow: "t", Reply: true, Flags: "R", SeqOffset: 1 << 31}, f, 7)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := parseFrame(frame)
		if !ok || !got.crafted || got.seq != 7 || got.flow != 2 || got.tcpFlags != FlagRST || got.tcpSeq != 5000+1<<31 ||
			got.tcpAck != 0 || got.hdr.Dst != nat || got.hdr.Dport != 41002 || got.hdr.Sport != 5002 || got.trailer != 0 {
			t.Errorf("v6 %v: reply RST read back as %+v", v6, got)
		}

		frame, _, err = c.build(&Craft{Flow: "t", SeqOffset: ^uint32(31), BadSum: true, Trailer: 40}, f, 3)
		if err != nil {
			t.Fatal(err)
		}
		got, ok = parseFrame(frame)
		if !ok || !got.crafted || got.seq != 3 || got.tcpFlags != FlagACK || got.tcpSeq != 1200-32 || got.tcpAck != 5000 ||
			got.tcpWin != 301 || got.hdr.Src != peer || got.hdr.Dst.Unmap() != map[bool]netip.Addr{false: sink4, true: sink6}[v6] ||
			got.trailer != 40 || got.tcpLen != craftPayload {
			t.Errorf("v6 %v: orig ACK read back as %+v", v6, got)
		}
		if l4CsumOK(t, frame, v6) {
			t.Errorf("v6 %v: badsum frame has a right checksum", v6)
		}
		frame, _, _ = c.build(&Craft{Flow: "t", Flags: "none"}, f, 4)
		if !l4CsumOK(t, frame, v6) {
			t.Errorf("v6 %v: the checksum of a crafted frame is wrong", v6)
		}
		// Nothing seen yet: no numbers to build from.
		c.gen = &capture{host: "gen"}
		if _, _, err := c.build(&Craft{Flow: "t", Reply: true, Flags: "R"}, f, 1); err == nil {
			t.Errorf("v6 %v: a reply built without the sink's segments", v6)
		}
	}
}

// l4CsumOK verifies the TCP/UDP checksum of an untagged IPv4 or IPv6
// frame with no trailer beyond the IP length.
func l4CsumOK(t *testing.T, frame []byte, v6 bool) bool {
	t.Helper()
	ip := frame[14:]
	var pseudo []byte
	var l4 []byte
	if v6 {
		pl := int(ip[4])<<8 | int(ip[5])
		l4 = ip[40 : 40+pl]
		pseudo = append(append(append([]byte{}, ip[8:40]...), 0, 0, byte(pl>>8), byte(pl)), 0, 0, 0, ip[6])
	} else {
		tl := int(ip[2])<<8 | int(ip[3])
		l4 = ip[20:tl]
		pseudo = append(append([]byte{}, ip[12:20]...), 0, ip[9], byte(len(l4)>>8), byte(len(l4)))
	}
	return checksum(append(pseudo, l4...)) == 0
}

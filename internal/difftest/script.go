// Package difftest is the differential test of fastpath's promise that it
// forwards only what the kernel would, exactly as the kernel would: a
// script (paced traffic interleaved with changes to the router) is played
// on a fresh lab once without fastpath and once with it, and what the
// sink received is compared per flow: which packets (sequence numbers in
// the payload), their headers after NAT, and when each flow stopped or
// moved, with the bounds of docs/offload.md as tolerance around each
// change. Scripts are written by hand (the fixed set, Fixed) or by a
// seeded generator (Generate); both print as text that Parse reads back,
// so any failure can be replayed. Besides changes, a script can send
// crafted packets (a forged reset, invalid flags, a wrong checksum, an
// Ethernet trailer) with a flow's addresses: where each one arrives, if
// anywhere, and with which headers, must be the same in both runs.
package difftest

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Bound says how soon a change must reach offloaded flows.
type Bound int

const (
	// BoundEvent: the kernel announces the change (netlink, nfnetlink,
	// ctnetlink); offloaded flows follow within EventBound.
	BoundEvent Bound = iota
	// BoundReval: no event (a set element expiring); offloaded flows
	// follow within the revalidation interval plus EventBound.
	BoundReval
)

// The documented bounds (docs/offload.md).
const (
	EventBound = 100 * time.Millisecond
	// Revalidate is flows.revalidate of the daemon the runner starts
	// (its default).
	Revalidate = time.Second
)

// Script is one scenario.
type Script struct {
	Name string
	// Seed of the generated script (0: written by hand).
	Seed uint64
	// R2: the lab has the router's third interface r2 and sink2 behind it.
	R2 bool
	// NAT: the router masquerades what leaves r1 (lab.MasqueradeRuleset).
	NAT bool
	// Duration of the scripted part, from t0 (after the warm-up).
	Duration time.Duration
	// Known, when set, names a known divergence: the script is kept but
	// skipped with this message until the daemon follows it.
	Known string
	Setup []Cmd // in order, before any traffic
	Flows []Flow
	Steps []Step // in order of At
}

// Flow is one paced stream from gen to a sink address.
type Flow struct {
	Name string
	// "udp", "tcp", "icmp", or "tcpconn": a new TCP connection per
	// packet (every 5 Intervals), sending Size*Burst bytes.
	Proto string
	V6    bool
	Size  int // payload bytes (UDP, ICMP) or record bytes (TCP); at least 16
	// Burst: packets (records) sent back to back every Interval; 0 is 1.
	// TCP bursts make bulk transfers, whose windows conntrack tracks.
	Burst int
	// Index of the flow in the script: ports and ICMP ids derive from it,
	// so both runs send identical packets.
	Index int
}

// Ports and ids of flow i: fixed, so the runs' packets are identical.
func (f Flow) SrcPort() uint16 { return uint16(41000 + f.Index) }
func (f Flow) DstPort() uint16 { return uint16(5000 + f.Index) }
func (f Flow) EchoID() uint16  { return uint16(0x4600 + f.Index) }

// Cmd is a command run in one of the lab's namespaces. nft commands get
// their text on stdin (`nft -f -`): ';' separates nft commands there.
type Cmd struct {
	NS   string // "rtr", "gen", "sink", "sink2"
	Argv []string
}

// String is the command as the script format writes it.
func (c Cmd) String() string { return c.NS + " " + strings.Join(c.Argv, " ") }

// Step is a change at script time At: a command, or (Craft set) a crafted
// packet, which changes nothing the flows are compared under: no
// tolerance window, its own fate compared exactly.
type Step struct {
	At    time.Duration
	Bound Bound
	// Effect is how long after the command the change takes effect (a set
	// element's timeout); 0 for most changes.
	Effect time.Duration
	// Shape: the step turns egress shaping on (+1) or off (-1): while it
	// is on, delivery is compared by rate, not packet by packet.
	Shape int
	Cmd   Cmd
	Craft *Craft
}

// Craft is a packet the runner builds itself with a flow's addresses and
// ports and sends as an Ethernet frame from an end host's interface:
// from gen as the flow's own packets leave it, or (Reply) from the sink
// host back to the address and port the sink sees the flow come from
// (after NAT), so it enters the router on another interface. TCP
// sequence and acknowledgement numbers are the sender's current ones
// (read from the flow's segments the runner captures) plus an offset.
// The payload is a header naming the step, so the captures at the sink
// hosts and at gen find it wherever it arrives.
type Craft struct {
	Flow  string // a udp or tcp flow of the script
	Reply bool
	// TCP only: the flags as letters from FSRPAU, "none" for none, ""
	// for a plain ACK; offsets added to the sender's next sequence
	// number and to its acknowledgement number.
	Flags     string
	SeqOffset uint32
	AckOffset uint32
	BadSum    bool // the TCP/UDP checksum is wrong (never 0: that is "none" for UDP)
	Trailer   int  // bytes after the IP datagram in the frame (Ethernet padding or a trailer)
}

// TCP flags a Craft may set, as in the TCP header.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagPSH = 0x08
	FlagACK = 0x10
	FlagURG = 0x20
)

// flagLetters are the flags in the order Format writes them.
var flagLetters = []struct {
	bit    uint8
	letter byte
}{{FlagFIN, 'F'}, {FlagSYN, 'S'}, {FlagRST, 'R'}, {FlagPSH, 'P'}, {FlagACK, 'A'}, {FlagURG, 'U'}}

// FlagString is flags as the script format writes them: letters from
// FSRPAU, "none" for no flag.
func FlagString(flags uint8) string {
	var b []byte
	for _, f := range flagLetters {
		if flags&f.bit != 0 {
			b = append(b, f.letter)
		}
	}
	if len(b) == 0 {
		return "none"
	}
	return string(b)
}

func parseFlags(s string) (uint8, error) {
	if s == "none" {
		return 0, nil
	}
	var flags uint8
	for i := 0; i < len(s); i++ {
		found := false
		for _, f := range flagLetters {
			if s[i] == f.letter && flags&f.bit == 0 {
				flags |= f.bit
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("flags %q: want letters from FSRPAU, each once, or none", s)
		}
	}
	return flags, nil
}

// String is the craft as the script format writes it, after "craft".
func (c Craft) String() string {
	dir := "orig"
	if c.Reply {
		dir = "reply"
	}
	b := []string{c.Flow, dir}
	if c.Flags != "" {
		b = append(b, "flags="+c.Flags)
	}
	if c.SeqOffset != 0 {
		b = append(b, fmt.Sprintf("seq=+%d", c.SeqOffset))
	}
	if c.AckOffset != 0 {
		b = append(b, fmt.Sprintf("ack=+%d", c.AckOffset))
	}
	if c.BadSum {
		b = append(b, "badsum")
	}
	if c.Trailer != 0 {
		b = append(b, fmt.Sprintf("trailer=%d", c.Trailer))
	}
	return strings.Join(b, " ")
}

// TCPFlags are the craft's TCP flags (a plain ACK unless Flags says).
func (c Craft) TCPFlags() uint8 {
	if c.Flags == "" {
		return FlagACK
	}
	flags, _ := parseFlags(c.Flags) // checked by Parse
	return flags
}

// parseCraft reads what follows "craft": FLOW orig|reply, then options
// flags=LETTERS|none, seq=+N, ack=+N, badsum, trailer=N.
func parseCraft(f []string) (*Craft, error) {
	if len(f) < 2 || f[1] != "orig" && f[1] != "reply" {
		return nil, fmt.Errorf("want: craft FLOW orig|reply [flags=FSRPAU|none] [seq=+N] [ack=+N] [badsum] [trailer=N]")
	}
	c := &Craft{Flow: f[0], Reply: f[1] == "reply"}
	for _, opt := range f[2:] {
		key, val, _ := strings.Cut(opt, "=")
		var err error
		switch key {
		case "flags":
			var flags uint8
			flags, err = parseFlags(val)
			c.Flags = FlagString(flags) // letters in one order, so texts round-trip
		case "seq", "ack":
			var n uint64
			n, err = strconv.ParseUint(strings.TrimPrefix(val, "+"), 10, 32)
			if key == "seq" {
				c.SeqOffset = uint32(n)
			} else {
				c.AckOffset = uint32(n)
			}
		case "badsum":
			c.BadSum = true
			if val != "" {
				err = fmt.Errorf("badsum takes no value")
			}
		case "trailer":
			c.Trailer, err = strconv.Atoi(val)
		default:
			err = fmt.Errorf("unknown craft option %q", opt)
		}
		if err != nil {
			return nil, fmt.Errorf("craft %s: %w", opt, err)
		}
	}
	return c, nil
}

// Interval is the flows' send interval.
const Interval = 10 * time.Millisecond

// Format writes the script in the text form Parse reads.
func (s *Script) Format() string {
	var b strings.Builder
	fmt.Fprintf(&b, "script %s\n", s.Name)
	if s.Seed != 0 {
		fmt.Fprintf(&b, "seed %d\n", s.Seed)
	}
	if s.R2 {
		b.WriteString("r2\n")
	}
	if s.NAT {
		b.WriteString("nat\n")
	}
	fmt.Fprintf(&b, "duration %s\n", s.Duration)
	if s.Known != "" {
		fmt.Fprintf(&b, "known %s\n", s.Known)
	}
	for _, c := range s.Setup {
		fmt.Fprintf(&b, "setup %s\n", c)
	}
	for _, f := range s.Flows {
		fam := "4"
		if f.V6 {
			fam = "6"
		}
		fmt.Fprintf(&b, "flow %s %s %s %d", f.Name, f.Proto, fam, f.Size)
		if f.Burst > 1 {
			fmt.Fprintf(&b, " %d", f.Burst)
		}
		b.WriteString("\n")
	}
	for _, st := range s.Steps {
		if st.Craft != nil {
			fmt.Fprintf(&b, "at %s craft %s\n", st.At, st.Craft)
			continue
		}
		fmt.Fprintf(&b, "at %s %s %s\n", st.At, st.boundString(), st.Cmd)
	}
	return b.String()
}

func (st Step) boundString() string {
	s := "event"
	if st.Bound == BoundReval {
		s = "reval"
	}
	if st.Effect > 0 {
		s += "+" + st.Effect.String()
	}
	switch st.Shape {
	case 1:
		s += ",shape"
	case -1:
		s += ",unshape"
	}
	return s
}

// Parse reads a script in the form Format writes. Lines starting with '#'
// and blank lines are ignored.
func Parse(text string) (*Script, error) {
	s := &Script{}
	sc := bufio.NewScanner(strings.NewReader(text))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if err := s.parseLine(f, line); err != nil {
			return nil, fmt.Errorf("script line %d: %w: %q", n, err, line)
		}
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Script) parseLine(f []string, line string) error {
	rest := strings.TrimSpace(strings.TrimPrefix(line, f[0]))
	switch f[0] {
	case "script":
		if len(f) != 2 {
			return fmt.Errorf("want: script NAME")
		}
		s.Name = f[1]
	case "seed":
		v, err := strconv.ParseUint(rest, 10, 64)
		if err != nil {
			return err
		}
		s.Seed = v
	case "r2":
		s.R2 = true
	case "nat":
		s.NAT = true
	case "duration":
		d, err := time.ParseDuration(rest)
		if err != nil {
			return err
		}
		s.Duration = d
	case "known":
		s.Known = rest
	case "setup":
		c, err := parseCmd(f[1:])
		if err != nil {
			return err
		}
		s.Setup = append(s.Setup, c)
	case "flow":
		if len(f) != 5 && len(f) != 6 {
			return fmt.Errorf("want: flow NAME udp|tcp|tcpconn|icmp 4|6 SIZE [BURST]")
		}
		fl := Flow{Name: f[1], Proto: f[2], V6: f[3] == "6", Index: len(s.Flows)}
		if f[3] != "4" && f[3] != "6" {
			return fmt.Errorf("family %q: want 4 or 6", f[3])
		}
		size, err := strconv.Atoi(f[4])
		if err != nil {
			return err
		}
		fl.Size = size
		if len(f) == 6 {
			if fl.Burst, err = strconv.Atoi(f[5]); err != nil {
				return err
			}
		}
		s.Flows = append(s.Flows, fl)
	case "at":
		if len(f) < 4 {
			return fmt.Errorf("want: at TIME BOUND NS COMMAND... or at TIME craft FLOW orig|reply [OPTIONS]")
		}
		at, err := time.ParseDuration(f[1])
		if err != nil {
			return err
		}
		st := Step{At: at}
		if f[2] == "craft" {
			if st.Craft, err = parseCraft(f[3:]); err != nil {
				return err
			}
			s.Steps = append(s.Steps, st)
			return nil
		}
		if len(f) < 5 {
			return fmt.Errorf("want: at TIME BOUND NS COMMAND...")
		}
		if err := st.parseBound(f[2]); err != nil {
			return err
		}
		if st.Cmd, err = parseCmd(f[3:]); err != nil {
			return err
		}
		s.Steps = append(s.Steps, st)
	default:
		return fmt.Errorf("unknown keyword %q", f[0])
	}
	return nil
}

func (st *Step) parseBound(tok string) error {
	kind, flag, _ := strings.Cut(tok, ",")
	switch flag {
	case "":
	case "shape":
		st.Shape = 1
	case "unshape":
		st.Shape = -1
	default:
		return fmt.Errorf("bound flag %q: want shape or unshape", flag)
	}
	kind, eff, hasEff := strings.Cut(kind, "+")
	switch kind {
	case "event":
		st.Bound = BoundEvent
	case "reval":
		st.Bound = BoundReval
	default:
		return fmt.Errorf("bound %q: want event or reval", kind)
	}
	if hasEff {
		d, err := time.ParseDuration(eff)
		if err != nil {
			return err
		}
		st.Effect = d
	}
	return nil
}

func parseCmd(f []string) (Cmd, error) {
	if len(f) < 2 {
		return Cmd{}, fmt.Errorf("want: NS COMMAND...")
	}
	switch f[0] {
	case "rtr", "gen", "sink", "sink2":
	default:
		return Cmd{}, fmt.Errorf("namespace %q: want rtr, gen, sink or sink2", f[0])
	}
	return Cmd{NS: f[0], Argv: f[1:]}, nil
}

// Validate checks what the runner relies on.
func (s *Script) Validate() error {
	if s.Name == "" {
		return fmt.Errorf("script without a name")
	}
	if s.Duration <= 0 || s.Duration > 20*time.Second {
		return fmt.Errorf("script %s: duration %s outside (0, 20s]", s.Name, s.Duration)
	}
	if len(s.Flows) == 0 || len(s.Flows) > 16 {
		return fmt.Errorf("script %s: %d flows, want 1 to 16", s.Name, len(s.Flows))
	}
	names := map[string]bool{}
	for _, f := range s.Flows {
		if names[f.Name] {
			return fmt.Errorf("script %s: flow %s twice", s.Name, f.Name)
		}
		names[f.Name] = true
		switch f.Proto {
		case "udp", "tcp", "icmp", "tcpconn":
		default:
			return fmt.Errorf("script %s: flow %s: proto %q", s.Name, f.Name, f.Proto)
		}
		if f.Burst < 0 || f.Burst > 256 {
			return fmt.Errorf("script %s: flow %s: burst %d outside 0..256", s.Name, f.Name, f.Burst)
		}
		if f.Size < headerLen || f.Size > 1400 {
			return fmt.Errorf("script %s: flow %s: size %d outside %d..1400", s.Name, f.Name, f.Size, headerLen)
		}
	}
	var last time.Duration
	for _, st := range s.Steps {
		if st.At < last || st.At > s.Duration {
			return fmt.Errorf("script %s: step at %s out of order or past the duration", s.Name, st.At)
		}
		last = st.At
		if st.Craft != nil {
			if err := s.validateCraft(st.Craft); err != nil {
				return fmt.Errorf("script %s: step at %s: %w", s.Name, st.At, err)
			}
			continue
		}
		if st.Cmd.NS == "sink2" && !s.R2 {
			return fmt.Errorf("script %s: sink2 without r2", s.Name)
		}
	}
	return nil
}

// validateCraft checks what the runner needs to build c.
func (s *Script) validateCraft(c *Craft) error {
	f, ok := s.flow(c.Flow)
	if !ok {
		return fmt.Errorf("craft: no flow %s", c.Flow)
	}
	switch f.Proto {
	case "tcp":
	case "udp":
		if c.Flags != "" || c.SeqOffset != 0 || c.AckOffset != 0 {
			return fmt.Errorf("craft: flags, seq and ack are for tcp flows, %s is udp", f.Name)
		}
	default:
		return fmt.Errorf("craft: flow %s is %s, want udp or tcp", f.Name, f.Proto)
	}
	if c.Trailer < 0 || c.Trailer > 1000 {
		return fmt.Errorf("craft: trailer %d outside 0..1000", c.Trailer)
	}
	return nil
}

// flow is the script's flow called name.
func (s *Script) flow(name string) (Flow, bool) {
	for _, f := range s.Flows {
		if f.Name == name {
			return f, true
		}
	}
	return Flow{}, false
}

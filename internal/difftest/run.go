package difftest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/labd"
	"github.com/fastpath-router/fastpath/internal/traffic"
)

// RunOptions say how to play a script.
type RunOptions struct {
	// Attach: "" plays the script on the kernel alone; otherwise the
	// daemon (Binary) runs in rtr in offload mode with this attach mode
	// on every router interface.
	Attach string
	Binary string
	// HostTxChecksumOff: the end hosts finish their checksums (forced
	// native XDP refuses hosts that send partial checksums).
	HostTxChecksumOff bool
	Log               *slog.Logger
}

// Mode names the run in reports.
func (o RunOptions) Mode() string {
	if o.Attach == "" {
		return "kernel"
	}
	return "fastpath-" + o.Attach
}

// Bounds of a run.
const (
	labTimeout     = 20 * time.Second
	readyTimeout   = 30 * time.Second
	cmdTimeout     = 5 * time.Second
	minWarmup      = 400 * time.Millisecond
	offloadTimeout = 6 * time.Second // warm-up until fastpath carries every flow
	drainQuiet     = 300 * time.Millisecond
	drainMax       = 3 * time.Second
)

// baseRuleset is in the router of every run: a forward chain with a
// stateful rule (so conntrack tracks the lab's flows, which offload mode
// needs) and an empty chain before it where scripts add their rules.
const baseRuleset = `table inet dt {
	counter invalid { }
	chain chg {
		type filter hook forward priority -5; policy accept;
	}
	chain main {
		type filter hook forward priority filter; policy accept;
		ct state invalid counter name "invalid"
	}
	chain in {
		type filter hook input priority filter; policy accept;
		ct state invalid counter name "invalid"
	}
}
`

// Run plays script s once on a fresh lab and returns what the sink hosts
// received. The lab, the daemon and every socket are gone when it returns.
func Run(ctx context.Context, s *Script, o RunOptions) (_ *Result, err error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := &Result{Mode: o.Mode()}

	l, err := upLab(ctx, s.R2, o.HostTxChecksumOff)
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := lab.Down(l.Name); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	nsOf := map[string]string{"gen": l.Gen, "rtr": l.Rtr, "sink": l.Sink, "sink2": l.Sink2}

	setup := []Cmd{{NS: "rtr", Argv: []string{"nft", baseRuleset}}}
	if s.NAT {
		setup = append(setup, Cmd{NS: "rtr", Argv: []string{"nft", lab.MasqueradeRuleset}})
	}
	for _, c := range append(setup, s.Setup...) {
		if err := runCmd(ctx, l, nsOf, c); err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
	}

	var client *api.Client
	if o.Attach != "" {
		dir, err := os.MkdirTemp("", "fastpath-difftest-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir) // after the daemon stopped (defers run last in, first out)
		p, c, err := startDaemon(ctx, l, o, dir)
		if err != nil {
			return nil, err
		}
		defer func() {
			if serr := p.Stop(log); serr != nil {
				err = errors.Join(err, serr)
			}
			if err != nil {
				err = fmt.Errorf("%w\ndaemon output:\n%s", err, p.Output())
			}
		}()
		client = c
	}

	caps := []*capture{}
	defer func() {
		for _, c := range caps {
			if c != nil {
				c.close()
			}
		}
	}()
	c, err := startCapture(l.Sink, l.SinkIf, "sink")
	if err != nil {
		return nil, err
	}
	caps = append(caps, c)
	if s.R2 {
		c, err := startCapture(l.Sink2, l.Sink2If, "sink2")
		if err != nil {
			return nil, err
		}
		caps = append(caps, c)
	}
	var cr *crafter
	if s.crafts() {
		// A crafted packet may come back to gen; gen's capture also
		// gives the sink's TCP numbers to a crafted reply.
		gc, err := startCapture(l.Gen, l.GenIf, "gen")
		if err != nil {
			return nil, err
		}
		caps = append(caps, gc)
		if cr, err = newCrafter(l, caps[0], gc); err != nil {
			return nil, err
		}
	}

	var streams []*stream
	defer func() {
		for _, st := range streams {
			st.close()
		}
	}()
	for _, f := range s.Flows {
		dst := l.SinkAddr4
		if f.V6 {
			dst = l.SinkAddr6
		}
		st, err := openStream(ctx, l.Gen, l.Sink, f, dst)
		if err != nil {
			return nil, err
		}
		streams = append(streams, st)
	}

	// Traffic starts; the script's clock (t0) starts after the warm-up,
	// when fastpath carries every flow it can carry.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now().Add(10 * time.Millisecond)
	maxTicks := int((offloadTimeout + minWarmup + s.Duration + time.Second) / Interval)
	for _, st := range streams {
		wg.Add(1)
		go func() { defer wg.Done(); st.run(start, stop, maxTicks) }()
	}
	stopped := false
	stopTraffic := func() {
		if !stopped {
			close(stop)
			wg.Wait()
			stopped = true
		}
	}
	defer stopTraffic()

	if err := traffic.WaitUntil(ctx, start.Add(minWarmup)); err != nil {
		return nil, err
	}
	offloaded := map[string]bool{}
	if client != nil {
		offloaded, err = waitOffloaded(ctx, client, s.Flows, s.craftTargets())
		if err != nil {
			return nil, err
		}
	}
	var counts0 map[string]uint64
	if s.crafts() {
		if counts0, err = routerCounts(ctx, l, client); err != nil {
			return nil, err
		}
	}
	t0 := time.Now()
	log.Debug("script clock starts", "mode", res.Mode, "warmup", t0.Sub(start))

	for i, st := range s.Steps {
		if err := traffic.WaitUntil(ctx, t0.Add(st.At)); err != nil {
			return nil, err
		}
		begin := time.Since(t0)
		if st.Craft != nil {
			f, _ := s.flow(st.Craft.Flow) // Validate checked it
			if err := cr.send(st.Craft, f, i); err != nil {
				return nil, fmt.Errorf("step %d: %w", i+1, err)
			}
		} else if err := runCmd(ctx, l, nsOf, st.Cmd); err != nil {
			return nil, fmt.Errorf("step %d: %w", i+1, err)
		}
		res.Steps = append(res.Steps, StepTimes{Start: begin, Done: time.Since(t0)})
	}
	if err := traffic.WaitUntil(ctx, t0.Add(s.Duration)); err != nil {
		return nil, err
	}
	end := time.Now()
	stopTraffic()
	drain(ctx, caps, streams)
	if s.crafts() {
		counts, err := routerCounts(ctx, l, client)
		if err != nil {
			return nil, err
		}
		res.Router = map[string]uint64{}
		for k, n := range counts {
			if d := n - counts0[k]; d > 0 {
				res.Router[k] = d
			}
		}
	}

	var seenAll []seen
	for i, c := range caps {
		seenAll = append(seenAll, c.close()...)
		caps[i] = nil
	}
	// In arrival order across the sink hosts (TCP headers are looked up by
	// time).
	slices.SortStableFunc(seenAll, func(a, b seen) int { return a.at.Compare(b.at) })
	for _, st := range streams {
		fr := collect(st, seenAll, t0, end)
		fr.Offloaded = offloaded[st.f.Name]
		res.Flows = append(res.Flows, fr)
	}
	res.Crafted = collectCrafted(s, seenAll)
	return res, nil
}

// craftTargets are the flows crafted packets aim at.
func (s *Script) craftTargets() map[string]bool {
	m := map[string]bool{}
	for _, st := range s.Steps {
		if st.Craft != nil {
			m[st.Craft.Flow] = true
		}
	}
	return m
}

// routerCounts reads the router's counters that tell how it judged
// crafted packets, for the report (Result.Router has their growth over
// the scripted part: evidence that the packets reached the router): the
// ruleset's named counter "invalid" (ct state invalid, forward and
// input), and with fastpath (c not nil) its drops by reason and the
// pass reasons crafted packets take.
func routerCounts(ctx context.Context, l *lab.Lab, c *api.Client) (map[string]uint64, error) {
	cctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	out, err := l.Command(cctx, l.Rtr, "nft", "list", "counter", "inet", "dt", "invalid").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("nft list counter invalid: %w: %s", err, out)
	}
	m := map[string]uint64{}
	f := strings.Fields(string(out))
	if i := slices.Index(f, "packets"); i >= 0 && i+1 < len(f) {
		m["ruleset ct invalid"], err = strconv.ParseUint(f[i+1], 10, 64)
	}
	if err != nil || len(m) == 0 {
		return nil, fmt.Errorf("nft list counter invalid: no packet count in %q", out)
	}
	if c == nil {
		return m, nil
	}
	st, err := c.Stats(cctx)
	if err != nil {
		return nil, fmt.Errorf("daemon stats: %w", err)
	}
	for _, i := range st.Interfaces {
		for r, n := range i.DropReasons {
			m["fastpath dropped "+r] += n
		}
		for _, r := range []string{"tcp_flags", "tcp_close", "bad_checksum"} {
			m["fastpath passed "+r] += i.PassReasons[r]
		}
	}
	return m, nil
}

// crafts reports whether the script sends crafted packets.
func (s *Script) crafts() bool {
	return slices.ContainsFunc(s.Steps, func(st Step) bool { return st.Craft != nil })
}

// collectCrafted is where each crafted packet arrived first, if anywhere.
func collectCrafted(s *Script, seenAll []seen) []CraftResult {
	var out []CraftResult
	for i, st := range s.Steps {
		if st.Craft == nil {
			continue
		}
		c := CraftResult{Step: i}
		for _, x := range seenAll { // in arrival order
			if x.crafted && x.seq == int64(i) {
				c.Delivered, c.Hdr, c.Trailer = true, x.hdr, x.trailer
				if x.tcp {
					c.Flags = FlagString(x.tcpFlags)
				}
				break
			}
		}
		out = append(out, c)
	}
	return out
}

func upLab(ctx context.Context, r2, txOff bool) (*lab.Lab, error) {
	ctx, cancel := context.WithTimeout(ctx, labTimeout)
	defer cancel()
	var err error
	for range 3 { // a clash with another lab's random name is unlikely
		var l *lab.Lab
		l, err = lab.Up(ctx, lab.Options{Name: "d" + randomName(5), R2: r2, HostTxChecksumOff: txOff})
		if err == nil {
			return l, nil
		}
		if !strings.Contains(err.Error(), "already exists") {
			break
		}
	}
	return nil, err
}

func randomName(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}

// startDaemon runs fastpath in rtr, offload mode on every router
// interface, and waits until all are attached.
func startDaemon(ctx context.Context, l *lab.Lab, o RunOptions, dir string) (*labd.Process, *api.Client, error) {
	if o.Binary == "" {
		return nil, nil, errors.New("fastpath run without a binary")
	}
	socket := filepath.Join(dir, "api.sock")
	ifaces := []labd.Interface{
		{Name: l.RtrIn, Mode: "offload", Attach: o.Attach},
		{Name: l.RtrOut, Mode: "offload", Attach: o.Attach},
	}
	if l.Sink2 != "" {
		ifaces = append(ifaces, labd.Interface{Name: l.RtrOut2, Mode: "offload", Attach: o.Attach})
	}
	cfg, err := labd.WriteConfig(dir, socket, ifaces...)
	if err != nil {
		return nil, nil, err
	}
	p, err := labd.Start(ctx, l.Rtr, o.Binary, cfg)
	if err != nil {
		return nil, nil, err
	}
	c := api.NewClient(socket)
	if _, err := p.WaitReady(ctx, c, readyTimeout); err != nil {
		p.Stop(o.Log)
		return nil, nil, fmt.Errorf("daemon (attach %s): %w\n%s", o.Attach, err, p.Output())
	}
	return p, c, nil
}

// waitOffloaded polls the daemon's flow cache until every UDP and TCP flow
// is in it (either direction; both for the flows in both, which crafted
// packets aim at) with packets forwarded, or offloadTimeout passes; it
// reports which were.
func waitOffloaded(ctx context.Context, c *api.Client, flows []Flow, both map[string]bool) (map[string]bool, error) {
	got := map[string]bool{}
	deadline := time.Now().Add(offloadTimeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fl, err := c.Flows(cctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("daemon flows: %w", err)
		}
		missing := 0
		for _, f := range flows {
			if f.Proto == "icmp" {
				continue // the kernel's always (conntrack lookups from BPF are TCP/UDP only)
			}
			var fwd, back bool
			for _, e := range fl.Flows {
				if (e.Proto == f.Proto || e.Proto == "tcp" && f.Proto == "tcpconn") && e.Packets > 0 {
					fwd = fwd || e.In.Dst.Port() == f.DstPort()
					back = back || e.In.Src.Port() == f.DstPort()
				}
			}
			got[f.Name] = fwd && back || !both[f.Name] && (fwd || back)
			if !got[f.Name] {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return got, nil
		}
		if err := traffic.WaitUntil(ctx, time.Now().Add(50*time.Millisecond)); err != nil {
			return nil, err
		}
	}
}

// runCmd runs c in its namespace; nft commands read their text on stdin.
func runCmd(ctx context.Context, l *lab.Lab, nsOf map[string]string, c Cmd) error {
	ns := nsOf[c.NS]
	if ns == "" {
		return fmt.Errorf("%s: no namespace %s in this lab", c, c.NS)
	}
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	argv := c.Argv
	var stdin string
	if argv[0] == "nft" {
		stdin = strings.Join(argv[1:], " ") + "\n"
		argv = []string{"nft", "-f", "-"}
	}
	cmd := l.Command(ctx, ns, argv[0], argv[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	// conntrack exits 1 when no entry matched: in a generated script a
	// flow may have no entry at that moment, which is a valid outcome.
	if err != nil && argv[0] == "conntrack" && strings.Contains(string(out), " 0 flow entries") {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w: %s", c, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// drain waits until nothing more arrives for drainQuiet (packets still
// queued behind a shaper) and every live TCP stream has delivered all it
// sent (a retransmission after a cut may come a second or more later), at
// most drainMax.
func drain(ctx context.Context, caps []*capture, streams []*stream) {
	tcpPending := func() bool {
		for _, st := range streams {
			st.mu.Lock()
			pending := st.f.Proto == "tcp" && !st.dead && len(st.recvAt) < len(st.sendAt) ||
				st.inflight.Load() > 0
			st.mu.Unlock()
			if pending {
				return true
			}
		}
		return false
	}
	count := func() int {
		n := 0
		for _, c := range caps {
			c.mu.Lock()
			n += len(c.got)
			c.mu.Unlock()
		}
		for _, st := range streams {
			st.mu.Lock()
			n += len(st.recvAt)
			st.mu.Unlock()
		}
		return n
	}
	deadline := time.Now().Add(drainMax)
	last, quietSince := count(), time.Now()
	for time.Now().Before(deadline) {
		if traffic.WaitUntil(ctx, time.Now().Add(50*time.Millisecond)) != nil {
			return
		}
		if n := count(); n != last {
			last, quietSince = n, time.Now()
		} else if time.Since(quietSince) >= drainQuiet && !tcpPending() {
			return
		}
	}
}

// collect turns a stream's sends and what the captures saw into the
// flow's packets from t0 to end.
func collect(st *stream, seenAll []seen, t0, end time.Time) FlowResult {
	fr := FlowResult{Name: st.f.Name}
	type arr struct {
		at  time.Time
		hdr Header
	}
	first := map[int64]arr{}
	var tcpHdrs []seen
	for _, s := range seenAll {
		// gen's capture holds replies and crafted packets, no flow's
		if s.flow != st.f.Index || s.crafted || s.hdr.Host == "gen" {
			continue
		}
		if s.tcp {
			if isTCP(st.f) && s.hdr.Dport == st.f.DstPort() {
				tcpHdrs = append(tcpHdrs, s)
			}
			continue
		}
		if a, ok := first[s.seq]; !ok || s.at.Before(a.at) {
			first[s.seq] = arr{s.at, s.hdr}
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for seq, at := range st.sendAt {
		if at.Before(t0) || at.After(end) {
			continue
		}
		p := Packet{Sent: at.Sub(t0)}
		if isTCP(st.f) {
			if rt, ok := st.recvAt[uint64(seq)]; ok {
				p.Delivered, p.Arrived, p.Hdr = true, rt.Sub(t0), tcpHeaderAt(tcpHdrs, rt)
			}
		} else if a, ok := first[int64(seq)]; ok {
			p.Delivered, p.Arrived, p.Hdr = true, a.at.Sub(t0), a.hdr
		}
		fr.Packets = append(fr.Packets, p)
	}
	return fr
}

// tcpHeaderAt is the header of the last captured segment of the flow at
// or before t (the one that completed the record), else the first after.
func tcpHeaderAt(hs []seen, t time.Time) Header {
	var h Header
	found := false
	for _, s := range hs {
		if !s.at.After(t) {
			h, found = s.hdr, true
		} else if !found {
			return s.hdr
		}
	}
	// A TCP record always comes with segments; without one the capture
	// lost them: the fragment flag and such are unknown.
	return h
}

// isTCP: the flow's packets are TCP records, counted by the sink's socket.
func isTCP(f Flow) bool { return f.Proto == "tcp" || f.Proto == "tcpconn" }

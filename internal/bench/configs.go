package bench

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/labd"
)

// Configuration names, in the order a run measures them.
const (
	ConfigVeth        = "veth-direct"
	ConfigXDPRedirect = "xdp-redirect"
	ConfigTCRedirect  = "tc-redirect"
	ConfigKernel      = "kernel"
	ConfigKernelMasq  = "kernel-masq"
	ConfigRouteXDP    = "route-xdp"
	ConfigRouteTC     = "route-tc"
	// IPv6 frames through a FIB of 10 and of a million routes, flow i to
	// route i % routes (the IPv4 range the bench may use holds no million
	// routes), in route mode and in offload mode. Measured only when
	// named: installing a million routes takes a while.
	ConfigRouteXDP6      = "route-xdp6"
	ConfigRouteXDP6Big   = "route-xdp6-1m"
	ConfigOffloadXDP6    = "offload-xdp6"
	ConfigOffloadXDP6Big = "offload-xdp6-1m"
	ConfigExtern         = "extern"
	ConfigOffloadXDP     = "offload-xdp"
	ConfigOffloadTC      = "offload-tc"
	ConfigOffloadAuto    = "offload-auto"
	// Measured only with Options.Checks, each right after its config:
	// the same with the datapath's checksum verification off.
	ConfigOffloadXDPNoCsum = "offload-xdp-nocsum"
	ConfigOffloadTCNoCsum  = "offload-tc-nocsum"
)

// Baseline is the configuration every other is compared with: the usual
// edge router.
const Baseline = ConfigKernelMasq

// config is one way of getting frames from gen to the counter.
type config struct {
	name  string
	label string // for the table
	short string // for the plot
	// conntrack: the router tracks connections, so each measured flow is
	// first established through the kernel, both directions.
	conntrack bool
	// daemon: fastpath runs in rtr with this mode and attach.
	mode, attach string
	// masq: the nftables edge ruleset (stateful forward, masquerade out
	// of r1) is loaded in rtr.
	masq bool
	// veth: count at r0 itself, nothing forwards.
	veth bool
	// redirect: the plain XDP redirect r0 -> r1.
	redirect bool
	// tcRedirect: the plain TC redirect both ways, MACs rewritten.
	tcRedirect bool
	// guard: a guard section for the daemon's config (the flood scenario).
	guard string
	// extern: a forwarder from elsewhere, started and stopped by the
	// commands of Options.Extern.
	extern bool
	// noChecksum: rtr runs with net.netfilter.nf_conntrack_checksum=0, so
	// neither conntrack nor the datapath (which follows it) verifies
	// TCP/UDP checksums. Such configs are measured only with
	// Options.Checks, right after the config named checksOf.
	noChecksum bool
	checksOf   string
	// ipv6: the generated frames are IPv6; routes > 0: that many routes
	// are added to rtr's FIB and the flows' destinations spread over
	// them (fibRoute).
	ipv6   bool
	routes int
	// named: part of a run only when named in Options.Configs.
	named bool
}

var configs = []config{
	{name: ConfigVeth, label: "veth direct (wire limit)", short: "veth direct", veth: true},
	{name: ConfigXDPRedirect, label: "plain XDP redirect", short: "XDP redirect", redirect: true},
	{name: ConfigTCRedirect, label: "plain TC redirect", short: "TC redirect", tcRedirect: true},
	{name: ConfigKernel, label: "kernel forwarding", short: "kernel"},
	{name: ConfigKernelMasq, label: "kernel + conntrack + masquerade", short: "kernel+masq", conntrack: true, masq: true},
	{name: ConfigRouteXDP, label: "fastpath route (XDP)", short: "fp route XDP", mode: "route", attach: "xdp"},
	{name: ConfigRouteTC, label: "fastpath route (TC)", short: "fp route TC", mode: "route", attach: "tc"},
	{name: ConfigRouteXDP6, label: "fastpath route (XDP), IPv6, 10 routes", short: "fp route XDP v6", mode: "route", attach: "xdp",
		ipv6: true, routes: 10, named: true},
	{name: ConfigRouteXDP6Big, label: "fastpath route (XDP), IPv6, 1M routes", short: "fp route XDP v6 1M", mode: "route", attach: "xdp",
		ipv6: true, routes: 1_000_000, named: true},
	{name: ConfigExtern, label: externLabel, short: "extern", extern: true},
	{name: ConfigOffloadXDP, label: "fastpath offload + masq (XDP)", short: "fp offload XDP", conntrack: true, masq: true, mode: "offload", attach: "xdp"},
	{name: ConfigOffloadXDPNoCsum, label: "fastpath offload + masq (XDP), no checksum check", short: "fp offload XDP nocsum", conntrack: true, masq: true, mode: "offload", attach: "xdp",
		noChecksum: true, checksOf: ConfigOffloadXDP},
	{name: ConfigOffloadTC, label: "fastpath offload + masq (TC)", short: "fp offload TC", conntrack: true, masq: true, mode: "offload", attach: "tc"},
	{name: ConfigOffloadTCNoCsum, label: "fastpath offload + masq (TC), no checksum check", short: "fp offload TC nocsum", conntrack: true, masq: true, mode: "offload", attach: "tc",
		noChecksum: true, checksOf: ConfigOffloadTC},
	{name: ConfigOffloadAuto, label: "fastpath offload + masq (auto)", short: "fp offload auto", conntrack: true, masq: true, mode: "offload", attach: "auto"},
	{name: ConfigOffloadXDP6, label: "fastpath offload + masq (XDP), IPv6, 10 routes", short: "fp offload XDP v6", conntrack: true, masq: true,
		mode: "offload", attach: "xdp", ipv6: true, routes: 10, named: true},
	{name: ConfigOffloadXDP6Big, label: "fastpath offload + masq (XDP), IPv6, 1M routes", short: "fp offload XDP v6 1M", conntrack: true, masq: true,
		mode: "offload", attach: "xdp", ipv6: true, routes: 1_000_000, named: true},
}

// ConfigNames lists every configuration one can select, in run order
// (not those Options.Checks adds).
func ConfigNames() []string {
	var names []string
	for _, c := range configs {
		if c.checksOf == "" {
			names = append(names, c.name)
		}
	}
	return names
}

// withChecks is names (in run order) with, after each configuration that
// has one, its twin without checksum verification.
func withChecks(names []string) []string {
	var out []string
	for _, c := range configs {
		if slices.Contains(names, c.name) || c.checksOf != "" && slices.Contains(names, c.checksOf) {
			out = append(out, c.name)
		}
	}
	return out
}

func configByName(name string) (config, bool) {
	for _, c := range configs {
		if c.name == name {
			return c, true
		}
	}
	return config{}, false
}

// configByName is the configuration name as this run measures it: extern
// under its label.
func (o *Options) configByName(name string) (config, bool) {
	c, ok := configByName(name)
	if c.extern {
		c.label = o.Extern.label()
		c.short = c.label
	}
	return c, ok
}

// masqRuleset is the usual edge router: forward what belongs to a known
// connection or comes from the inside (r0), masquerade what leaves by the
// outside (r1).
var masqRuleset = fmt.Sprintf(`table inet fpbench {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname %[1]q oifname %[2]q accept
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname %[2]q masquerade
	}
}
`, lab.RtrIn, lab.RtrOut)

// active is a configuration set up in the lab.
type active struct {
	cfg   config
	count *counter // where arriving frames are counted
	d     *daemon
	redir *redirector
	tcr   *tcRedirector
	undo  []func() error
}

// daemon is the fastpath daemon running in rtr.
type daemon struct {
	proc   *labd.Process
	client *api.Client
	status *api.Status
	config string // its config file, for reconfigure
	socket string
	// apiWait bounds one API call (apiTimeout if 0); the flood scenario
	// waits longer: a flood the guard does not stop starves the daemon.
	apiWait time.Duration
}

// callCtx is ctx bounded for one API call.
func (d *daemon) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if d.apiWait > 0 {
		return context.WithTimeout(ctx, d.apiWait)
	}
	return context.WithTimeout(ctx, apiTimeout)
}

// reconfigure writes cfg as the daemon's config and reloads it.
func (r *runner) reconfigure(ctx context.Context, d *daemon, cfg config) error {
	if err := os.WriteFile(d.config, []byte(daemonConfig(cfg, d.socket, r.flowEntries)), 0o644); err != nil {
		return fmt.Errorf("write daemon config: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, daemonReady)
	defer cancel()
	if _, err := d.client.Reload(ctx); err != nil {
		return fmt.Errorf("reload the daemon: %w", err)
	}
	return nil
}

// Bounds of the daemon's start and of one API call.
const (
	daemonReady = 15 * time.Second
	apiTimeout  = 2 * time.Second
)

// setup prepares cfg in the lab. On error nothing of it remains.
func (r *runner) setup(ctx context.Context, cfg config) (_ *active, err error) {
	e := r.env
	a := &active{cfg: cfg, count: e.sink}
	defer func() {
		if err != nil {
			err = errors.Join(err, a.teardown())
		}
	}()
	if cfg.noChecksum {
		// Before the daemon starts: it reads the sysctl at start.
		if err := e.run(ctx, e.lab.Rtr, "", "sysctl", "-qw", "net.netfilter.nf_conntrack_checksum=0"); err != nil {
			return nil, err
		}
		a.undo = append(a.undo, func() error {
			return e.run(context.Background(), e.lab.Rtr, "", "sysctl", "-qw", "net.netfilter.nf_conntrack_checksum=1")
		})
	}
	if cfg.routes > 0 {
		// Before the daemon starts, which then reads them all once.
		r.prog.show(cfg.name, 0, 0, fmt.Sprintf("adding %d routes", cfg.routes))
		err := e.fibRoutes(ctx, cfg.routes, true)
		a.undo = append(a.undo, func() error { return e.fibRoutes(context.Background(), cfg.routes, false) })
		if err != nil {
			return nil, err
		}
	}
	if cfg.masq {
		if err := e.run(ctx, e.lab.Rtr, masqRuleset, "nft", "-f", "-"); err != nil {
			return nil, err
		}
		a.undo = append(a.undo, func() error {
			err := e.run(context.Background(), e.lab.Rtr, "", "nft", "delete", "table", "inet", "fpbench")
			// The entries would otherwise outlive the ruleset and carry
			// their NAT into the next configuration.
			return errors.Join(err, e.run(context.Background(), e.lab.Rtr, "", "conntrack", "-F"))
		})
	}
	switch {
	case cfg.veth:
		c, err := attachCounter(e.lab.Rtr, e.lab.RtrIn)
		if err != nil {
			return nil, err
		}
		a.count = c
		a.undo = append(a.undo, c.Close)
	case cfg.redirect:
		if a.redir, err = attachRedirector(e.lab.Rtr, e.lab.RtrIn, e.lab.RtrOut); err != nil {
			return nil, err
		}
		a.undo = append(a.undo, a.redir.Close)
	case cfg.tcRedirect:
		if a.tcr, err = e.attachTCRedirector(); err != nil {
			return nil, err
		}
		a.undo = append(a.undo, a.tcr.Close)
	case cfg.mode != "":
		if a.d, err = r.startDaemon(ctx, cfg, &a.undo); err != nil {
			return nil, err
		}
	case cfg.extern:
		if err := r.externUp(ctx, a); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// teardown undoes setup, last step first.
func (a *active) teardown() error {
	var errs []error
	for i := len(a.undo) - 1; i >= 0; i-- {
		errs = append(errs, a.undo[i]())
	}
	a.undo = nil
	return errors.Join(errs...)
}

// daemonConfig is the daemon's config for cfg: both router interfaces,
// a flow cache sized for the largest flow count (LRU: keep it well above
// the two entries per connection), idle flows kept for the whole run.
func daemonConfig(cfg config, socket string, flowEntries int) string {
	var b strings.Builder
	b.WriteString("# written by fastpath bench\nversion: 1\ninterfaces:\n")
	for _, ifc := range []string{lab.RtrIn, lab.RtrOut} {
		fmt.Fprintf(&b, "  - {name: %s, mode: %s, attach: %s}\n", ifc, cfg.mode, cfg.attach)
	}
	fmt.Fprintf(&b, "flows:\n  max_entries: %d\n  idle_timeout: 1h\n", flowEntries)
	fmt.Fprintf(&b, "api:\n  socket: %s\n", socket)
	b.WriteString(cfg.guard)
	return b.String()
}

// startDaemon runs `fastpath run` in rtr for cfg and waits until both
// interfaces are attached as asked. Its undo steps go to undo.
func (r *runner) startDaemon(ctx context.Context, cfg config, undo *[]func() error) (*daemon, error) {
	e := r.env
	if r.opts.Binary == "" {
		return nil, errors.New("no fastpath binary to run the daemon")
	}
	dir, err := os.MkdirTemp("", "fastpath-bench-")
	if err != nil {
		return nil, fmt.Errorf("make config dir: %w", err)
	}
	*undo = append(*undo, func() error { return os.RemoveAll(dir) })
	socket := filepath.Join("/run/fastpath", "bench-"+e.lab.Name+".sock")
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return nil, fmt.Errorf("make socket dir: %w", err)
	}
	path := filepath.Join(dir, labd.ConfigFile)
	if err := os.WriteFile(path, []byte(daemonConfig(cfg, socket, r.flowEntries)), 0o644); err != nil {
		return nil, fmt.Errorf("write daemon config: %w", err)
	}
	p, err := labd.Start(ctx, e.lab.Rtr, r.opts.Binary, path, "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	d := &daemon{proc: p, client: api.NewClient(socket), config: path, socket: socket}
	*undo = append(*undo, func() error {
		err := p.Stop(e.log)
		if rerr := os.Remove(socket); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return err
	})
	st, err := p.WaitReady(ctx, d.client, daemonReady)
	if err != nil {
		return nil, fmt.Errorf("fastpath daemon (%s): %w: %s\n%s", cfg.name, err, lastLine(p.Output()), p.Output())
	}
	for _, ifc := range st.Interfaces {
		if cfg.attach != "auto" && ifc.AttachedAs != cfg.attach {
			return nil, fmt.Errorf("fastpath daemon (%s): %s attached as %q, want %q", cfg.name, ifc.Name, ifc.AttachedAs, cfg.attach)
		}
	}
	d.status = st
	// The daemon stays off the CPU the packets are handled on.
	if err := pinProcess(p.PID(), e.restCPU); err != nil {
		return nil, err
	}
	return d, nil
}

// lastLine is the last non-empty line of s: a daemon's last word, usually
// why it stopped.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// ingressCounters are fastpath's counters on r0: packets it forwarded and
// packets it passed to the kernel, by reason.
type ingressCounters struct {
	fwd, pass uint64
	reasons   map[string]uint64
}

func (d *daemon) counters(ctx context.Context, ifname string) (ingressCounters, error) {
	ctx, cancel := d.callCtx(ctx)
	defer cancel()
	st, err := d.client.Stats(ctx)
	if err != nil {
		return ingressCounters{}, fmt.Errorf("read fastpath counters: %w", err)
	}
	for _, s := range st.Interfaces {
		if s.Name == ifname {
			return ingressCounters{fwd: s.Forwarded.Packets, pass: s.Passed.Packets, reasons: s.PassReasons}, nil
		}
	}
	return ingressCounters{}, fmt.Errorf("fastpath has no counters for %s", ifname)
}

// topReason is the pass reason that grew most between two readings.
func topReason(before, after ingressCounters) string {
	best, top := uint64(0), ""
	for k, v := range after.reasons {
		if d := v - before.reasons[k]; d > best {
			best, top = d, k
		}
	}
	return top
}

// routerProgram returns the program that handles r0's packets, to profile:
// the plain redirect, fastpath's program on r0 or the XDP program the
// extern forwarder attached there. nil when there is none.
func (a *active) routerProgram(e *env) (*ebpf.Program, string, error) {
	switch {
	case a.cfg.extern:
		return e.externProgram()
	case a.redir != nil:
		p, err := a.redir.objs.Prog.Clone()
		return p, "bench_fwd", err
	case a.tcr != nil:
		p, err := a.tcr.dirs[0].objs.Prog.Clone()
		return p, "bench_tc_fwd", err
	case a.d != nil:
		for _, ifc := range a.d.status.Interfaces {
			if ifc.Name != lab.RtrIn || ifc.ProgramID == 0 {
				continue
			}
			p, err := ebpf.NewProgramFromID(ebpf.ProgramID(ifc.ProgramID))
			if err != nil {
				return nil, "", fmt.Errorf("open fastpath program %d: %w", ifc.ProgramID, err)
			}
			name := "fp_" + a.cfg.attach
			if info, err := p.Info(); err == nil {
				name = info.Name
			}
			return p, name, nil
		}
	}
	return nil, "", nil
}

// run runs a command in netns ns, stdin from input.
func (e *env) run(ctx context.Context, ns, input, name string, args ...string) error {
	cmd := e.lab.Command(ctx, ns, name, args...)
	if input != "" {
		cmd.Stdin = strings.NewReader(input)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// Extern is a forwarder from elsewhere (xdp-forward, a hand-written
// program, kernel settings) measured in the same run as configuration
// "extern": Up is run before the configuration's cells and Down after them,
// each with `sh -c` inside rtr, with $IN and $OUT naming r0 and r1. It is a
// route-mode comparison: no conntrack and no ruleset in rtr, flows not
// established first, round trips measured (the forwarder must route both
// ways to pass them), bulk TCP not.
type Extern struct {
	Up    string `json:"up"`
	Down  string `json:"down,omitempty"`
	Label string `json:"label,omitempty"` // for the tables; default externLabel
}

// Bounds of the extern commands: each may take externTimeout; a failing
// one's output goes into the cell's error up to externOutput bytes.
const (
	externTimeout  = time.Minute
	externWait     = 5 * time.Second // for processes it left holding its output
	externOutput   = 300
	maxExternLabel = 40
	externLabel    = "external forwarder"
)

// validate checks x for a run; selected says whether extern is among the
// run's configurations.
func (x Extern) validate(selected bool) error {
	switch {
	case x.Up == "" && (x.Down != "" || x.Label != ""):
		return errors.New("--extern-down and --extern-label need --extern-up")
	case x.Up == "" && selected:
		return fmt.Errorf("configuration %s needs --extern-up: the command that starts the forwarder", ConfigExtern)
	case x.Up != "" && !selected:
		return fmt.Errorf("--extern-up given, but %s is not among the configurations", ConfigExtern)
	case strings.TrimSpace(x.Up) == "" && x.Up != "":
		return errors.New("--extern-up is blank")
	case len(x.Label) > maxExternLabel:
		return fmt.Errorf("--extern-label is %d bytes, at most %d", len(x.Label), maxExternLabel)
	}
	for _, r := range x.Label {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("--extern-label %q: printable characters only", x.Label)
		}
	}
	return nil
}

// label is the name the tables give the configuration.
func (x Extern) label() string {
	if x.Label != "" {
		return x.Label
	}
	return externLabel
}

// externSettings is what the report records of o's extern forwarder: nil
// unless it was measured.
func externSettings(o Options) *Extern {
	if !slices.Contains(o.Configs, ConfigExtern) {
		return nil
	}
	x := o.Extern
	x.Label = x.label()
	return &x
}

// externUp runs the up command for a. The down command and the check for
// programs left behind are registered first, so they run whatever happens
// to up (a failure, ctx ending half-way).
func (r *runner) externUp(ctx context.Context, a *active) error {
	e, x := r.env, r.opts.Extern
	a.undo = append(a.undo, func() error {
		var err error
		if x.Down != "" {
			// Also after ctx ended (Ctrl-C): the lab must be left clean.
			ctx, cancel := context.WithTimeout(context.Background(), externTimeout)
			defer cancel()
			err = e.runExtern(ctx, "--extern-down", x.Down)
		}
		return errors.Join(err, e.clearXDP())
	})
	ctx, cancel := context.WithTimeout(ctx, externTimeout)
	defer cancel()
	return e.runExtern(ctx, "--extern-up", x.Up)
}

// runExtern runs script with sh -c in rtr. It runs in a process group of
// its own: a terminal's Ctrl-C reaches the bench, which then kills the
// group (up) or lets it finish (down), instead of cutting a down command
// short.
func (e *env) runExtern(ctx context.Context, flag, script string) error {
	cmd := e.lab.Command(ctx, e.lab.Rtr, "sh", "-c", script)
	cmd.Env = append(os.Environ(), "IN="+e.lab.RtrIn, "OUT="+e.lab.RtrOut)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = externWait
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	e.log.Debug("extern command", "flag", flag, "command", script, "err", err, "output", out.String())
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return fmt.Errorf("%s in %s: %w: %s", flag, e.lab.Rtr, err, oneLine(out.String(), externOutput))
	}
	return nil
}

// oneLine folds a command's output into one line of at most n bytes (the
// end kept, where the reason usually is), for a cell's error.
func oneLine(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	s = strings.Join(lines, " | ")
	if s == "" {
		return "no output"
	}
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// clearXDP detaches an XDP program the extern configuration left on r0 or
// r1 (native or generic), so it cannot skew the configurations after it,
// and says so.
func (e *env) clearXDP() error {
	var errs []error
	for _, ifname := range []string{e.lab.RtrIn, e.lab.RtrOut} {
		err := nsutil.Do(e.lab.Rtr, func() error {
			id, err := xdpProgID(ifname)
			if err != nil || id == 0 {
				return err
			}
			l, err := netlink.LinkByName(ifname)
			if err != nil {
				return fmt.Errorf("look up %s: %w", ifname, err)
			}
			for _, mode := range []int{unix.XDP_FLAGS_DRV_MODE, unix.XDP_FLAGS_SKB_MODE} {
				_ = netlink.LinkSetXdpFdWithFlags(l, -1, mode) // the mode it is not in fails
			}
			if left, err := xdpProgID(ifname); err != nil || left != 0 {
				return errors.Join(err, fmt.Errorf("an XDP program (id %d) is left on %s and cannot be detached", left, ifname))
			}
			return fmt.Errorf("an XDP program (id %d) was left on %s: detached", id, ifname)
		})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// xdpProgID is the id of the XDP program attached to ifname in the
// current netns, 0 for none.
func xdpProgID(ifname string) (uint32, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return 0, fmt.Errorf("look up %s: %w", ifname, err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return x.ProgId, nil
	}
	return 0, nil
}

// externProgram opens the XDP program attached to r0, if any: the extern
// forwarder's, to profile.
func (e *env) externProgram() (*ebpf.Program, string, error) {
	var id uint32
	err := nsutil.Do(e.lab.Rtr, func() error {
		var err error
		id, err = xdpProgID(e.lab.RtrIn)
		return err
	})
	if err != nil || id == 0 {
		return nil, "", err
	}
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return nil, "", fmt.Errorf("open the XDP program on %s (id %d): %w", e.lab.RtrIn, id, err)
	}
	name := fmt.Sprintf("xdp_prog_%d", id)
	if info, err := p.Info(); err == nil && info.Name != "" {
		name = info.Name
	}
	return p, name, nil
}

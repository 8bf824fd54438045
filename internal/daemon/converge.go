package daemon

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/config"
	"github.com/fastpath-router/fastpath/internal/datapath"
)

// The one reconcile path. start, the resync (netlink events and the
// periodic tick) and reload all call converge, which compares what is
// wanted (the configured interfaces, and for each the kernel's link: its
// ifindex, MAC, MTU, device-bound nftables chains, and the facts the hook
// decision reads) with what the datapath has, and changes only what
// differs.

// start applies the config in full or fails: every configured interface
// must exist and attach. On error the caller runs detachAll.
func (r *reconciler) start() error {
	_, err := r.converge(r.running, true)
	return err
}

// sync brings the datapath in line with the kernel's links now: an
// interface that went away is detached, one that (re)appeared is attached,
// a changed MAC, MTU or device chain is rewritten, hooks are decided
// again. Failures are per interface, recorded in its status and logged
// once: the rest keeps working.
func (r *reconciler) sync() {
	if _, err := r.converge(r.running, false); err != nil && !errors.Is(err, errInterfaceFailed) {
		r.log.Warn("resync", "err", err)
	}
}

// apply makes the interfaces match want (a reloaded config), touching only
// what differs, and says what it did. An interface whose new attachment
// fails keeps its old one; the error says so.
func (r *reconciler) apply(want []config.Interface) ([]string, error) {
	return r.converge(func() []config.Interface { return want }, false)
}

// running is the running config's interface list. (A resync reads it when
// it converges: a reload before it has set it.)
func (r *reconciler) running() []config.Interface {
	out := make([]config.Interface, len(r.ifaces))
	for i, ic := range r.ifaces {
		out[i] = ic.cfg
	}
	return out
}

// errInterfaceFailed marks errors that are one interface's, already
// recorded by fail.
var errInterfaceFailed = errors.New("interface failed")

type ifaceError struct {
	name string
	err  error
}

func (e *ifaceError) Error() string { return e.err.Error() }
func (e *ifaceError) Is(t error) bool {
	return t == errInterfaceFailed
}
func (e *ifaceError) Unwrap() error { return e.err }

// converge is the reconcile, towards the interfaces wanted returns.
// strict (start): every interface must exist and be Ethernet before
// anything is touched, and the first failure to attach is returned at once
// (the caller undoes everything).
func (r *reconciler) converge(wanted func() []config.Interface, strict bool) ([]string, error) {
	defer r.publish()
	want := wanted()
	links, err := r.links()
	if err != nil {
		return nil, err
	}
	if strict {
		if err := checkPresent(want, links); err != nil {
			return nil, err
		}
	}
	var (
		actions []string
		errs    []error
	)
	// The interface list: removed ones go, new ones come, changed ones take
	// their new config (a mode turned off goes now).
	byName := map[string]*iface{}
	for _, ic := range r.ifaces {
		byName[ic.cfg.Name] = ic
	}
	keep := map[string]bool{}
	for _, c := range want {
		keep[c.Name] = true
	}
	for _, ic := range r.ifaces {
		if !keep[ic.cfg.Name] {
			r.teardown(ic, api.StateMissing, removedFromConfig)
			actions = append(actions, "detach "+ic.cfg.Name+" ("+removedFromConfig+")")
		}
	}
	var changes []*ifaceChange
	next := make([]*iface, 0, len(want))
	for _, c := range want {
		ic, ok := byName[c.Name]
		if !ok {
			ic = &iface{cfg: c, state: api.StateMissing}
			if c.Mode == config.ModeOff {
				ic.state = api.StateOff
			}
			next = append(next, ic)
			if !strict {
				changes = append(changes, &ifaceChange{ic: ic, old: c, added: true})
			}
			continue
		}
		next = append(next, ic)
		if ic.cfg == c {
			continue
		}
		ch := &ifaceChange{ic: ic, old: ic.cfg}
		switch {
		case ic.managed() && c.Mode == config.ModeOff:
			r.teardown(ic, api.StateOff, "")
		case !ic.managed() && c.Mode != config.ModeOff:
			ic.state = api.StateMissing
		}
		ic.cfg = c
		changes = append(changes, ch)
	}
	r.ifaces = next
	nfChanged := r.readNFHooks()
	r.updateHolds()

	// Presence: what went is torn down, what is there is declared (again
	// when its MAC, MTU, mode or device chains changed).
	for _, ic := range r.ifaces {
		if !ic.managed() {
			continue
		}
		l, ok := links[ic.cfg.Name]
		if ic.ifindex != 0 && (!ok || l.Attrs().Index != ic.ifindex) {
			r.log.Warn("interface went away: its traffic goes through the kernel", "interface", ic.cfg.Name, "ifindex", ic.ifindex)
			r.teardown(ic, api.StateMissing, "")
		}
		if !ok {
			continue
		}
		if ic.ifindex != 0 {
			ic.nl = l
			if a := l.Attrs(); a.HardwareAddr.String() != ic.mac.String() || a.MTU != ic.mtu ||
				ic.declared != ic.cfg.Mode || slices.Contains(nfChanged, ic) {
				if err := r.declare(ic, l); err != nil {
					errs = append(errs, &ifaceError{ic.cfg.Name, err})
					r.log.Warn("interface changed and could not be rewritten", "interface", ic.cfg.Name, "err", err)
				}
			}
			continue
		}
		err := checkEthernet(l)
		if err == nil {
			err = r.declare(ic, l)
		}
		if err != nil {
			err = fmt.Errorf("interface %s: %w", ic.cfg.Name, err)
			if strict {
				return actions, err
			}
			r.fail(ic, err)
			errs = append(errs, &ifaceError{ic.cfg.Name, err})
			continue
		}
	}
	r.updateTargets()

	// Attach what is declared and has no program, then decide every other
	// hook again: the facts may have changed, or the config's attach.
	attachedNow := map[*iface]bool{}
	for _, ic := range r.ifaces {
		if !ic.managed() || ic.ifindex == 0 || ic.link != nil {
			continue
		}
		if err := r.attach(ic); err != nil {
			if strict {
				return actions, err
			}
			r.fail(ic, err)
			errs = append(errs, &ifaceError{ic.cfg.Name, err})
			continue
		}
		attachedNow[ic] = true // attached() logged it
	}
	attachChanged := map[*iface]*ifaceChange{}
	for _, ch := range changes {
		if ch.kind() == "change" && ch.old.Attach != ch.ic.cfg.Attach {
			attachChanged[ch.ic] = ch
		}
	}
	for _, ic := range r.ifaces {
		if !ic.managed() || ic.link == nil || attachedNow[ic] {
			continue
		}
		if ch, ok := attachChanged[ic]; ok {
			// Asked for by the operator: a hook that cannot be had, or
			// cannot be correct, is an error and the old one stays.
			if err := r.reattach(ic); err != nil {
				ic.cfg.Attach = ch.old.Attach
				ch.kept = err
				errs = append(errs, &ifaceError{ic.cfg.Name, err})
			}
			continue
		}
		r.redecide(ic)
	}

	failed := map[string]error{}
	for _, e := range errs {
		var ie *ifaceError
		if errors.As(e, &ie) {
			failed[ie.name] = ie.err
		}
	}
	for _, ic := range r.ifaces {
		if ic.ifindex != 0 {
			r.syncGRO(ic)
		}
	}
	for _, ch := range changes {
		actions = append(actions, ch.describe(failed[ch.ic.cfg.Name]))
	}
	return actions, errors.Join(errs...)
}

// ifaceChange is one interface a reload adds or changes.
type ifaceChange struct {
	ic    *iface
	old   config.Interface // its config before (for an added one, the new)
	added bool
	kept  error // the attach asked for could not be had: the old hook stays
}

func (ch *ifaceChange) kind() string {
	switch {
	case ch.added:
		return "add"
	case ch.old.Mode == config.ModeOff && ch.ic.cfg.Mode != config.ModeOff:
		return "enable"
	case ch.old.Mode != config.ModeOff && ch.ic.cfg.Mode == config.ModeOff:
		return "disable"
	}
	return "change"
}

// describe says what a reload did to one interface, given the error that
// interface ended with (nil: none).
func (ch *ifaceChange) describe(err error) string {
	c, name := ch.ic.cfg, ch.ic.cfg.Name
	present := ch.ic.ifindex != 0
	switch k := ch.kind(); k {
	case "add", "enable":
		switch {
		case err != nil:
			return fmt.Sprintf("%s %s: failed: %v", k, name, err)
		case !present && c.Mode != config.ModeOff:
			return fmt.Sprintf("%s %s (%s, attach %s; not present now)", k, name, c.Mode, c.Attach)
		}
		return fmt.Sprintf("%s %s (%s, attach %s)", k, name, c.Mode, c.Attach)
	case "disable":
		return "disable " + name
	}
	if !present {
		return fmt.Sprintf("change %s (%s, attach %s; not present now)", name, c.Mode, c.Attach)
	}
	var did []string
	if ch.old.Mode != c.Mode {
		did = append(did, fmt.Sprintf("mode %s -> %s", ch.old.Mode, c.Mode))
	}
	switch {
	case ch.kept != nil:
		did = append(did, fmt.Sprintf("kept %s: %v", ch.ic.hook, ch.kept))
	case ch.old.Attach != c.Attach:
		did = append(did, fmt.Sprintf("attach %s -> %s (%s)", ch.old.Attach, c.Attach, ch.ic.hook))
	}
	if len(did) == 0 {
		return ""
	}
	return fmt.Sprintf("%s: %s", name, strings.Join(did, ", "))
}

// checkPresent wants every configured interface, off ones too, to exist,
// and the managed ones to be Ethernet; the error names them all.
func checkPresent(want []config.Interface, links map[string]netlink.Link) error {
	var missing []error
	for _, c := range want {
		l, ok := links[c.Name]
		if !ok {
			missing = append(missing, fmt.Errorf("interface %s: no such interface in this network namespace", c.Name))
			continue
		}
		if err := checkEthernet(l); err != nil && c.Mode != config.ModeOff {
			missing = append(missing, fmt.Errorf("interface %s: %w", c.Name, err))
		}
	}
	return errors.Join(missing...)
}

// checkAdded is checkPresent for what a reload newly asks to manage: the
// interfaces want has and running has not, and those running has off and
// want in another mode. It reads the links only if there are some. bad is
// the config's fault (the reload's answer names it); err, reading the
// links failed.
func (r *reconciler) checkAdded(running, want []config.Interface) (bad, err error) {
	var added []config.Interface
	for _, c := range want {
		i := slices.IndexFunc(running, func(o config.Interface) bool { return o.Name == c.Name })
		if i < 0 || running[i].Mode == config.ModeOff && c.Mode != config.ModeOff {
			added = append(added, c)
		}
	}
	if len(added) == 0 {
		return nil, nil
	}
	links, err := r.links()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	return checkPresent(added, links), nil
}

// reattach moves an attached interface to the hook its config asks for;
// an attach: xdp that cannot be correct is an error.
func (r *reconciler) reattach(ic *iface) error {
	hook, why, err := r.resolveHook(ic)
	if err != nil {
		return err
	}
	return r.reattachTo(ic, hook, why)
}

// reattachTo moves an attached interface to hook (only its reason, when it
// has that hook already). The new program goes in
// before the old one leaves, except between XDP driver and generic mode,
// which cannot coexist on a device: then the kernel path carries the
// traffic for that instant.
func (r *reconciler) reattachTo(ic *iface, hook datapath.Hook, why string) error {
	if hook == ic.hook {
		ic.why = why
		return nil
	}
	old, oldHook := ic.link, ic.hook
	xdpSwap := (hook == datapath.HookXDP || hook == datapath.HookXDPGeneric) &&
		(oldHook == datapath.HookXDP || oldHook == datapath.HookXDPGeneric)
	if xdpSwap {
		r.detach(ic, old)
		ic.link = nil
	}
	if hook == datapath.HookTC {
		// The TC program behind XDP is the same program on the same tcx
		// hook, which takes a program once: it goes first, XDP carrying
		// everything meanwhile.
		r.removeGRO(ic)
	}
	l, hook, why, err := r.attachAs(ic, hook, why)
	if err != nil {
		if xdpSwap { // put the old one back
			if back, berr := r.dp.Attach(ic.ifindex, oldHook); berr == nil {
				ic.link = back
			} else {
				r.fail(ic, berr)
			}
		}
		return explainAttach(ic, hook, err)
	}
	if l == nil { // the fallback is the hook it has: nothing to move
		ic.why = why
		return nil
	}
	if !xdpSwap {
		r.detach(ic, old)
	}
	r.attached(ic, l, hook, why)
	return nil
}

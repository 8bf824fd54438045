package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Limits from the kernel: IFNAMSIZ is 16 with the NUL, and sun_path holds
// 108 bytes with the NUL.
const (
	maxIfnameLen     = 15
	maxSocketPathLen = 107
)

// Flow cache bounds: below the minimum the LRU churns on any real router;
// above the maximum the preallocated map takes gigabytes.
const (
	minMaxEntries  = 1024
	maxMaxEntries  = 1 << 24
	minIdleTimeout = time.Second
	maxIdleTimeout = 24 * time.Hour
	minRevalidate  = 100 * time.Millisecond
	maxRevalidate  = time.Hour
)

// Validate checks a Config. Zero Mode, Attach, Flows fields and API.Socket
// mean their defaults (offload, auto, DefaultMaxEntries, DefaultIdleTimeout,
// DefaultSocket), so configs built in code may leave them out; an empty
// Metrics.Listen means no metrics endpoint.
// All problems are returned together, joined with errors.Join.
func (c *Config) Validate() error {
	p := &problems{}
	c.validate(p)
	return errors.Join(p.errs()...)
}

func (c *Config) validate(p *problems) {
	switch {
	case c.Version == 1:
	case c.Version == 0 && !p.present("version"):
		p.add("version", "", "required, must be 1")
	default:
		p.add("version", "", "unsupported version %s; must be 1", p.shown("version", c.Version))
	}

	if len(c.Interfaces) == 0 {
		p.add("interfaces", "", "at least one interface is required")
	}
	firstUse := map[string]int{}
	for i, ifc := range c.Interfaces {
		ifc.validate(p, i, firstUse)
	}

	c.Flows.validate(p)
	c.API.validate(p)
	c.Metrics.validate(p)
	c.Guard.validate(p)
	c.Dashboard.validate(p)
	if c.Dashboard.Listen != "" && listensOverlap(c.Dashboard.Listen, c.Metrics.Listen) {
		p.add("dashboard.listen", "", "%q takes metrics.listen's port (%q); give the dashboard its own port", c.Dashboard.Listen, c.Metrics.Listen)
	}
}

// listensOverlap says whether two listen addresses ("host:port") would
// take the same port on some address: the same port, and the same host,
// or one that covers the other (empty and [::]: every address, IPv4 too
// by default; 0.0.0.0: every IPv4 one).
func listensOverlap(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb {
		return false
	}
	if ha == hb || ha == "" || hb == "" {
		return true
	}
	ia, errA := netip.ParseAddr(ha)
	ib, errB := netip.ParseAddr(hb)
	switch {
	case errA != nil || errB != nil:
		return false
	case ia.Is6() && ia.IsUnspecified(), ib.Is6() && ib.IsUnspecified():
		return true
	case ia.Is4() != ib.Is4():
		return false
	}
	return ia == ib || ia.IsUnspecified() || ib.IsUnspecified()
}

func (ifc Interface) validate(p *problems, i int, firstUse map[string]int) {
	base := fmt.Sprintf("interfaces[%d]", i)
	label := func(field string) string {
		if ifc.Name == "" {
			return base + "." + field
		}
		return fmt.Sprintf("%s.%s (%s)", base, field, ifc.Name)
	}

	if ifc.Name == "" {
		p.add(base+".name", "", "required")
	} else if why := badIfname(ifc.Name); why != "" {
		p.add(base+".name", "", "%q is not a valid Linux interface name: %s", ifc.Name, why)
	} else if first, dup := firstUse[ifc.Name]; dup {
		p.add(base+".name", "", "duplicate interface %q (also interfaces[%d]); list each interface once", ifc.Name, first)
	} else {
		firstUse[ifc.Name] = i
	}

	switch ifc.Mode {
	case "", ModeOffload, ModeRoute, ModeOff:
	default:
		p.add(base+".mode", label("mode"), `unknown mode %q; allowed: `+
			`"offload" (default: the firewall, conntrack and NAT decide, fastpath carries established flows), `+
			`"route" (stateless forwarding that skips the firewall: trusted segments only), `+
			`"off" (the kernel handles everything)`, ifc.Mode)
	}

	switch ifc.Attach {
	case "", AttachAuto, AttachXDP, AttachXDPGeneric, AttachTC:
	default:
		p.add(base+".attach", label("attach"), `unknown attach method %q; allowed: "auto" (default), "xdp", "xdp-generic", "tc"`, ifc.Attach)
	}
}

// validate checks the flow cache settings. A zero value means the default,
// unless the document sets it (0 or null): then it is out of range, not
// silently replaced.
func (f Flows) validate(p *problems) {
	switch n := f.MaxEntries; {
	case n == 0 && !p.present("flows.max_entries"):
	case n == 0:
		p.add("flows.max_entries", "", "must be between %d and %d; leave it out for the default %d",
			minMaxEntries, maxMaxEntries, DefaultMaxEntries)
	case n < minMaxEntries || n > maxMaxEntries:
		p.add("flows.max_entries", "", "%s is out of range; allowed %d to %d (default %d)",
			p.shown("flows.max_entries", n), minMaxEntries, maxMaxEntries, DefaultMaxEntries)
	}
	durationIn(p, "flows.idle_timeout", f.IdleTimeout, minIdleTimeout, maxIdleTimeout, DefaultIdleTimeout)
	durationIn(p, "flows.revalidate", f.Revalidate, minRevalidate, maxRevalidate, DefaultRevalidate)
}

// durationIn checks a duration setting: zero means the default unless the
// document sets it, anything else must lie in lo..hi.
func durationIn(p *problems, key string, d Duration, lo, hi, def time.Duration) {
	switch {
	case d == 0 && !p.present(key):
	case d == 0:
		p.add(key, "", "must be between %v and %v; leave it out for the default %v", Duration(lo), Duration(hi), Duration(def))
	case d < Duration(lo) || d > Duration(hi):
		p.add(key, "", "%v is out of range; allowed %v to %v (default %v)", d, Duration(lo), Duration(hi), Duration(def))
	}
}

func (a API) validate(p *problems) {
	switch s := a.Socket; {
	case s == "" && !p.present("api.socket"):
	case s == "":
		p.add("api.socket", "", "empty; give the socket's absolute path, or leave it out for the default %s", DefaultSocket)
	case !filepath.IsAbs(s):
		p.add("api.socket", "", "%q must be an absolute path", s)
	case len(s) > maxSocketPathLen:
		p.add("api.socket", "", "path is %d bytes; unix socket paths are limited to %d", len(s), maxSocketPathLen)
	}
}

// validate checks the metrics address: an IP address (or nothing, for
// every address) and a numeric port, as net.Listen takes them. Host names
// are refused: the config is checked without the network, and a name that
// resolves to several addresses would listen on only one of them.
func (m Metrics) validate(p *problems) {
	listenAddr(p, "metrics.listen", m.Listen)
}

// validate checks the dashboard: its address as metrics.listen's, and a
// token file (absolute path) whenever write actions are on.
func (d Dashboard) validate(p *problems) {
	listenAddr(p, "dashboard.listen", d.Listen)
	switch {
	case d.Write && d.TokenFile == "":
		p.add("dashboard.token_file", "", "required when dashboard.write is true: write actions need a token")
	case d.TokenFile != "" && !filepath.IsAbs(d.TokenFile):
		p.add("dashboard.token_file", "", "%q must be an absolute path", d.TokenFile)
	}
	if d.Write && d.Listen == "" {
		p.add("dashboard.write", "", "dashboard.listen is empty: there is no dashboard to write through")
	}
}

// listenAddr checks a TCP listen address (key names it); empty is fine.
func listenAddr(p *problems, key, addr string) {
	if addr == "" {
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		why := err.Error()
		if ae, ok := errors.AsType[*net.AddrError](err); ok {
			why = ae.Err
		}
		p.add(key, "", `%q is not host:port (%s); write e.g. "127.0.0.1:9469" or "[::1]:9469"`, addr, why)
		return
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			p.add(key, "", `host %q is not an IP address; write an address such as "127.0.0.1" or "::1", or leave it empty (":9469") for every address`, host)
		}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		p.add(key, "", "port %q is not a port number; allowed 1 to 65535", port)
	}
}

// badIfname says why name cannot be a Linux interface name (the kernel's
// dev_valid_name rules), or returns "".
func badIfname(name string) string {
	switch {
	case len(name) > maxIfnameLen:
		return fmt.Sprintf("%d bytes long, at most %d allowed", len(name), maxIfnameLen)
	case name == "." || name == "..":
		return `"." and ".." are reserved`
	case strings.ContainsAny(name, "/:"):
		return `contains "/" or ":"`
	}
	for _, r := range name {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "contains whitespace or a control character"
		}
	}
	return ""
}

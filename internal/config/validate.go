package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"unicode"
)

// Limits from the kernel: IFNAMSIZ is 16 with the NUL, and sun_path holds
// 108 bytes with the NUL.
const (
	maxIfnameLen     = 15
	maxSocketPathLen = 107
)

// Validate checks a Config. Zero Attach and API.Socket mean their defaults
// (auto, api.DefaultSocket), so configs built in code may leave them out.
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
		p.add("version", "", "unsupported version %d; must be 1", c.Version)
	}

	if len(c.Interfaces) == 0 {
		p.add("interfaces", "", "at least one interface is required")
	}
	firstUse := map[string]int{}
	for i, ifc := range c.Interfaces {
		ifc.validate(p, i, firstUse)
	}

	c.API.validate(p)
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
	case ModeRoute, ModeOff:
	case "":
		p.add(base+".mode", label("mode"), `required; choose "route" (stateless FIB forwarding that skips the firewall) `+
			`or "off" — "offload", the conntrack-aware default, is not available yet`)
	case ModeOffload:
		p.add(base+".mode", label("mode"), `"offload" is not implemented yet in this version of fastpath; `+
			`use "route" (stateless FIB forwarding that skips the firewall) or "off"`)
	default:
		p.add(base+".mode", label("mode"), `unknown mode %q; allowed: "route", "off" ("offload" is not available yet)`, ifc.Mode)
	}

	switch ifc.Attach {
	case "", AttachAuto, AttachXDP, AttachXDPGeneric, AttachTC:
	default:
		p.add(base+".attach", label("attach"), `unknown attach method %q; allowed: "auto" (default), "xdp", "xdp-generic", "tc"`, ifc.Attach)
	}
}

func (a API) validate(p *problems) {
	switch s := a.Socket; {
	case s == "":
	case !filepath.IsAbs(s):
		p.add("api.socket", "", "%q must be an absolute path", s)
	case len(s) > maxSocketPathLen:
		p.add("api.socket", "", "path is %d bytes; unix socket paths are limited to %d", len(s), maxSocketPathLen)
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

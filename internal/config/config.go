// Package config reads fastpath's YAML configuration.
//
// Decoding is strict: unknown keys, wrong types and extra YAML documents are
// errors, so a typo never silently falls back to a default. Every problem is
// reported at once, each with the file, line and field path.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Mode says what the datapath does with packets arriving on an interface.
type Mode string

// Interface modes.
const (
	// ModeOffload, the default: netfilter, conntrack and NAT decide on
	// every new flow in the kernel; once conntrack holds it as
	// established, the datapath forwards it, NAT included. ICMP and
	// anything conntrack cannot serve to BPF stay on the kernel path.
	ModeOffload Mode = "offload"
	// ModeRoute forwards statelessly along the kernel FIB, without
	// conntrack or firewall: for trusted segments only.
	ModeRoute Mode = "route"
	// ModeOff attaches nothing; the kernel handles every packet.
	ModeOff Mode = "off"
)

// Attach says how the datapath program is attached to an interface.
type Attach string

// Attach methods.
const (
	AttachAuto       Attach = "auto"
	AttachXDP        Attach = "xdp"
	AttachXDPGeneric Attach = "xdp-generic"
	AttachTC         Attach = "tc"
)

// Config is the whole configuration file.
type Config struct {
	Version    int         `yaml:"version"`
	Interfaces []Interface `yaml:"interfaces"`
	Flows      Flows       `yaml:"flows"`
	API        API         `yaml:"api"`
	Metrics    Metrics     `yaml:"metrics"`
	Guard      Guard       `yaml:"guard,omitempty"`
	Dashboard  Dashboard   `yaml:"dashboard,omitempty"`
}

// Interface is one managed network interface.
type Interface struct {
	Name   string `yaml:"name"`
	Mode   Mode   `yaml:"mode"`   // empty means ModeOffload
	Attach Attach `yaml:"attach"` // empty means AttachAuto
}

// Flow cache defaults, used where a config leaves the field out (or zero).
const (
	DefaultMaxEntries  = 65536
	DefaultIdleTimeout = 30 * time.Second
	DefaultRevalidate  = time.Second
)

// DefaultSocket is where the daemon serves its API unless api.socket says
// otherwise, and where clients look for it.
const DefaultSocket = "/run/fastpath/fastpath.sock"

// Flows sizes the flow cache of offload mode.
type Flows struct {
	// MaxEntries bounds the cache (one entry per direction of a
	// connection); 0 means DefaultMaxEntries.
	MaxEntries int `yaml:"max_entries"`
	// IdleTimeout: a flow that forwards no packet for this long leaves the
	// cache; 0 means DefaultIdleTimeout.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// Revalidate: how often each offloaded flow sends a packet through the
	// ruleset again, which bounds how long a change that sends no event
	// (a set element's timeout, iptables-legacy) takes to reach it; 0
	// means DefaultRevalidate. It runs only while the ruleset holds such
	// state, unless RevalidateAlways.
	Revalidate Duration `yaml:"revalidate"`
	// RevalidateAlways revalidates whatever the ruleset holds: for state
	// that changes without an event and that fastpath does not recognise.
	RevalidateAlways bool `yaml:"revalidate_always"`
}

// Entries is MaxEntries, or its default for a Config built in code
// without it (Parse fills it in).
func (f Flows) Entries() int {
	if f.MaxEntries <= 0 {
		return DefaultMaxEntries
	}
	return f.MaxEntries
}

// Idle is IdleTimeout, or its default.
func (f Flows) Idle() time.Duration {
	if f.IdleTimeout <= 0 {
		return DefaultIdleTimeout
	}
	return f.IdleTimeout.Std()
}

// RevalidateEvery is Revalidate, or its default.
func (f Flows) RevalidateEvery() time.Duration {
	if f.Revalidate <= 0 {
		return DefaultRevalidate
	}
	return f.Revalidate.Std()
}

// API configures the daemon's unix socket API.
type API struct {
	Socket string `yaml:"socket"` // empty means DefaultSocket
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is the TCP host:port where the daemon serves /metrics, e.g.
	// "127.0.0.1:9469"; empty (the default) serves no metrics.
	Listen string `yaml:"listen"`
}

// Dashboard configures the web dashboard (docs/dashboard.md).
type Dashboard struct {
	// Listen is the TCP host:port of the dashboard, e.g. "127.0.0.1:9469";
	// empty (the default) serves no dashboard. Anything but a loopback
	// address is allowed, with a warning in the log and in status.
	Listen string `yaml:"listen"`
	// Write allows the actions the API socket allows (reload), to
	// requests that carry the token in TokenFile. Off by default: the
	// dashboard only reads.
	Write bool `yaml:"write"`
	// TokenFile holds the bearer token write actions need; required
	// with Write.
	TokenFile string `yaml:"token_file"`
}

// Load reads and parses the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	// A relative list file is the config's neighbour, wherever the daemon
	// or check-config runs (the unit's working directory is /).
	dir := filepath.Dir(path)
	for _, files := range [][]string{c.Guard.AllowFiles, c.Guard.DenyFiles} {
		for i, f := range files {
			if f != "" && !filepath.IsAbs(f) {
				files[i] = filepath.Join(dir, f)
			}
		}
	}
	return c, nil
}

// applyDefaults fills the fields a config may leave out.
func (c *Config) applyDefaults() {
	for i := range c.Interfaces {
		if c.Interfaces[i].Mode == "" {
			c.Interfaces[i].Mode = ModeOffload
		}
		if c.Interfaces[i].Attach == "" {
			c.Interfaces[i].Attach = AttachAuto
		}
	}
	if c.Flows.MaxEntries == 0 {
		c.Flows.MaxEntries = DefaultMaxEntries
	}
	if c.Flows.Revalidate == 0 {
		c.Flows.Revalidate = Duration(DefaultRevalidate)
	}
	if c.Flows.IdleTimeout == 0 {
		c.Flows.IdleTimeout = Duration(DefaultIdleTimeout)
	}
	if c.API.Socket == "" {
		c.API.Socket = DefaultSocket
	}
}

// Package api is the daemon's HTTP+JSON interface on a unix socket: the
// types both sides share, the server and the client the CLI uses.
package api

import (
	"context"
	"time"
)

// DefaultSocket is where the daemon listens unless the config says otherwise.
const DefaultSocket = "/run/fastpath/fastpath.sock"

// Backend is what the server needs from the daemon.
type Backend interface {
	Status(ctx context.Context) (*Status, error)
	Stats(ctx context.Context) (*Stats, error)
}

// Status describes the daemon and each configured interface.
type Status struct {
	Version    string            `json:"version"`
	PID        int               `json:"pid"`
	NetNS      string            `json:"netns"` // e.g. "net:[4026532281]"
	ConfigFile string            `json:"config_file"`
	StartedAt  time.Time         `json:"started_at"`
	Interfaces []InterfaceStatus `json:"interfaces"`
}

// Interface states.
const (
	StateAttached = "attached" // program attached and forwarding per Mode
	StateOff      = "off"      // mode: off, nothing attached
	StateMissing  = "missing"  // configured, but no such interface now
	StateError    = "error"    // attach failed; Error says why; kernel path only
)

// InterfaceStatus is one configured interface as the daemon sees it now.
type InterfaceStatus struct {
	Name       string `json:"name"`
	Ifindex    int    `json:"ifindex,omitempty"`
	Mode       string `json:"mode"`                  // route | off
	Attach     string `json:"attach"`                // as configured: auto | xdp | xdp-generic | tc
	AttachedAs string `json:"attached_as,omitempty"` // xdp | xdp-generic | tc
	ProgramID  uint32 `json:"program_id,omitempty"`
	LinkID     uint32 `json:"link_id,omitempty"`
	// XDPTarget: the kernel says this device can transmit redirected XDP
	// frames (xdp_features NDO_XMIT), so XDP ingresses may forward to it.
	XDPTarget bool   `json:"xdp_target"`
	State     string `json:"state"`
	Error     string `json:"error,omitempty"`
}

// Counter is a packet and byte count.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// InterfaceStats are the datapath counters of one ingress interface, summed
// over CPUs. They count packets arriving on the interface.
type InterfaceStats struct {
	Name      string  `json:"name"`
	Ifindex   int     `json:"ifindex"`
	Forwarded Counter `json:"forwarded"`
	Passed    Counter `json:"passed"`
	// PassReasons counts packets handed to the kernel, by reason name
	// (see docs/counters.md); every reason is present, zero or not.
	PassReasons map[string]uint64 `json:"pass_reasons"`
}

// Stats holds the counters of every interface the datapath serves.
type Stats struct {
	Interfaces []InterfaceStats `json:"interfaces"`
}

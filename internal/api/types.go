// Package api is the daemon's HTTP+JSON interface on a unix socket: the
// types both sides share, the server and the client the CLI uses.
package api

import (
	"context"
	"net/netip"
	"time"

	"github.com/fastpath-router/fastpath/internal/config"
)

// DefaultSocket is where the daemon listens unless the config says
// otherwise (config owns it).
const DefaultSocket = config.DefaultSocket

// Backend is what the server needs from the daemon.
type Backend interface {
	Status(ctx context.Context) (*Status, error)
	Stats(ctx context.Context) (*Stats, error)
	Flows(ctx context.Context, q FlowQuery) (*Flows, error)
	// Events streams events until ctx ends. The channel is closed when
	// the stream ends; a slow reader misses events (see Event.Dropped).
	Events(ctx context.Context) (<-chan Event, error)
	// Reload rereads the config file and applies the difference. An
	// invalid file or a restart-only change returns a *ConfigError and
	// changes nothing; a failure on one interface returns the result (what
	// was done) together with the error. ctx is the request's: if it ends
	// before the reload begins, nothing is reloaded; a reload begun runs
	// to its end (one abandoned halfway must never be).
	Reload(ctx context.Context) (*ReloadResult, error)
}

// Status describes the daemon and each configured interface.
type Status struct {
	Version    string            `json:"version"`
	PID        int               `json:"pid"`
	NetNS      string            `json:"netns"` // e.g. "net:[4026532281]"
	ConfigFile string            `json:"config_file"`
	StartedAt  time.Time         `json:"started_at"`
	Interfaces []InterfaceStatus `json:"interfaces"`
	// Revalidation: each offloaded flow sends a packet through the ruleset
	// every RevalidateEvery ("off" when the ruleset changes only with
	// events), for the reasons in RevalidateWhy.
	RevalidateEvery string   `json:"revalidate_every"`
	RevalidateWhy   []string `json:"revalidate_why,omitempty"`
	// Datapath: the generations and the watchdog; absent while starting.
	Datapath *DatapathStatus `json:"datapath,omitempty"`
	// Dashboard: where the web dashboard listens; absent when it is off.
	Dashboard *DashboardStatus `json:"dashboard,omitempty"`
}

// Watchdog states (DatapathStatus.Watchdog).
const (
	WatchdogOff   = "off"   // no heartbeat: no interface in offload mode yet
	WatchdogArmed = "armed" // heartbeats arrive; offload runs
	WatchdogFired = "fired" // the heartbeat is late: the datapath passes everything to the kernel
)

// DatapathStatus is the state the daemon shares with the datapath.
type DatapathStatus struct {
	// RouteGeneration and RulesetGeneration count invalidations: each
	// route, neighbour or link change (ruleset change) bumps one and
	// makes every cached flow re-validate.
	RouteGeneration   uint32 `json:"route_generation"`
	RulesetGeneration uint32 `json:"ruleset_generation"`
	Watchdog          string `json:"watchdog"` // off | armed | fired
	// HeartbeatAgeSec: how long ago the daemon last wrote its heartbeat;
	// WatchdogSec: how late it may be before the watchdog fires.
	HeartbeatAgeSec float64 `json:"heartbeat_age_seconds,omitempty"`
	WatchdogSec     float64 `json:"watchdog_seconds,omitempty"`
	// Held: kernel state fastpath cannot follow packet by packet, which
	// sends packets to the kernel while it lasts: "all: why" (every
	// managed interface), "offload: why" (those in offload mode).
	Held []string `json:"held,omitempty"`
}

// DashboardStatus describes the web dashboard (docs/dashboard.md).
type DashboardStatus struct {
	URL      string `json:"url"`      // e.g. "http://127.0.0.1:9469/"
	Loopback bool   `json:"loopback"` // reachable from this host only
	Write    bool   `json:"write"`    // write actions allowed (with the token)
	// Warning is set when the dashboard is reachable from other hosts.
	Warning string `json:"warning,omitempty"`
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
	Mode       string `json:"mode"`                  // offload | route | off
	Attach     string `json:"attach"`                // as configured: auto | xdp | xdp-generic | tc
	AttachedAs string `json:"attached_as,omitempty"` // xdp | xdp-generic | tc
	// AttachReason says why this hook: the configured one, or what auto
	// read from the kernel ("veth peer g0 sends partial checksums ...").
	AttachReason string `json:"attach_reason,omitempty"`
	ProgramID    uint32 `json:"program_id,omitempty"`
	LinkID       uint32 `json:"link_id,omitempty"`
	// XDPTarget: the kernel says this device can transmit redirected XDP
	// frames (xdp_features NDO_XMIT), so XDP ingresses may forward to it.
	XDPTarget bool `json:"xdp_target"`
	// nftables chains bound to the device ("family table chain"), which no
	// redirect passes through: packets arriving on a device with ingress
	// chains, and packets towards one with egress chains, stay with the
	// kernel (pass reason nf_device_chain).
	NFTIngressChains []string `json:"nft_ingress_chains,omitempty"`
	NFTEgressChains  []string `json:"nft_egress_chains,omitempty"`
	State            string   `json:"state"`
	Error            string   `json:"error,omitempty"`
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
	// FlowsAdded / FlowsRemoved: flows this ingress put into / that left
	// the flow cache (offload mode; FIN/RST, conntrack gone, idle).
	FlowsAdded   uint64 `json:"flows_added"`
	FlowsRemoved uint64 `json:"flows_removed"`
	// EventsLost: flow events the datapath dropped because the daemon did
	// not read its ring buffer in time (the datapath never waits).
	EventsLost uint64 `json:"events_lost"`
	// PassReasons counts packets handed to the kernel, by reason name
	// (see docs/counters.md); every reason is present, zero or not.
	PassReasons map[string]uint64 `json:"pass_reasons"`
	// Dropped: packets the datapath dropped itself, which only happens
	// where the kernel would not act on them either (see docs/counters.md);
	// DropReasons by reason name, every reason present.
	Dropped     Counter           `json:"dropped"`
	DropReasons map[string]uint64 `json:"drop_reasons"`
}

// Stats holds the counters of every interface the datapath serves.
type Stats struct {
	Interfaces []InterfaceStats `json:"interfaces"`
}

// Tuple is one direction of a connection as packets carry it.
type Tuple struct {
	Src netip.AddrPort `json:"src"`
	Dst netip.AddrPort `json:"dst"`
}

// Flow is one direction of a connection in the flow cache (offload mode).
type Flow struct {
	Proto     string  `json:"proto"`     // tcp | udp
	Family    string  `json:"family"`    // ipv4 | ipv6
	Direction string  `json:"direction"` // original | reply (conntrack's view)
	In        Tuple   `json:"in"`        // as packets arrive
	Out       Tuple   `json:"out"`       // as they leave, after NAT
	NAT       string  `json:"nat"`       // "", "snat", "dnat" or "snat+dnat"
	Ingress   string  `json:"ingress"`
	Egress    string  `json:"egress"`
	Packets   uint64  `json:"packets"` // forwarded by fastpath, exact
	Bytes     uint64  `json:"bytes"`
	AgeSec    float64 `json:"age_seconds"`
	IdleSec   float64 `json:"idle_seconds"`
	// Stale: built under routes or a ruleset that changed since; its next
	// packet re-validates it (or sends it to the kernel).
	Stale bool `json:"stale"`
}

// Flows is the flow cache's content.
type Flows struct {
	Capacity int `json:"capacity"`
	// Total is how many flows the cache holds (that the query's filter
	// matches); Flows lists the query's limit of them, largest by bytes
	// first.
	Total int    `json:"total"`
	Flows []Flow `json:"flows"`
}

// Event kinds.
const (
	EventFlowAdded   = "flow_added"   // the datapath started forwarding a flow
	EventFlowRemoved = "flow_removed" // a flow left the cache (Reason says why)
	EventAttach      = "attach"       // an interface was attached (Interface, Detail)
	EventDetach      = "detach"       // an interface was detached or went away
	EventWatchdog    = "watchdog"     // heartbeat trouble: offload suspended/resumed
	EventReload      = "reload"       // the config was reloaded (Detail)
	EventDropped     = "dropped"      // Dropped events were lost for this reader
)

// Event is one line of `fastpath events`.
type Event struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	Interface string    `json:"interface,omitempty"`
	Flow      *Flow     `json:"flow,omitempty"` // flow events: counters and age as the event left, idle 0
	Reason    string    `json:"reason,omitempty"`
	Detail    string    `json:"detail,omitempty"`
	Dropped   uint64    `json:"dropped,omitempty"`
}

// ReloadResult says what a reload changed.
type ReloadResult struct {
	Changed bool     `json:"changed"`
	Actions []string `json:"actions"` // e.g. "attach r2 (offload, xdp)", "detach r1"
}

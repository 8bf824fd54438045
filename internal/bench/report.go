package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of one run: what was measured, how, and every raw
// sample. It is what --json writes.
type Report struct {
	Schema   string    `json:"schema"` // SchemaVersion
	Started  time.Time `json:"started"`
	Took     float64   `json:"took_seconds"`
	Machine  Machine   `json:"machine"`
	Settings Settings  `json:"settings"`
	// Baseline names the configuration the ratios are relative to.
	Baseline string `json:"baseline"`
	Cells    []Cell `json:"cells"`
	// TCP is bulk TCP through the configurations in Settings.TCPConfigs.
	TCP []TCPCell `json:"tcp"`
	// Latency is request/response round trips per configuration.
	Latency []LatencyCell `json:"latency"`
}

// SchemaVersion identifies the JSON layout.
const SchemaVersion = "fastpath-bench/1"

// Machine describes where the run happened.
type Machine struct {
	Kernel    string `json:"kernel"`
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model,omitempty"`
	RouterCPU int    `json:"router_cpu"`
	GenCPU    int    `json:"generator_cpu"`
	Version   string `json:"fastpath_version,omitempty"`
	// LoadBefore and LoadAfter are the 1-minute load averages at the start
	// and end: anything else running skews every rate.
	LoadBefore float64 `json:"load_before"`
	LoadAfter  float64 `json:"load_after"`
}

// Settings are the options the run used.
type Settings struct {
	Configs     []string `json:"configs"`
	FrameSizes  []int    `json:"frame_sizes"`
	Flows       []int    `json:"flows"`
	Repeats     int      `json:"repeats"`
	DurationSec float64  `json:"duration_seconds"`
	WarmupSec   float64  `json:"warmup_seconds"`
	Profile     bool     `json:"profile"`
	FlowEntries int      `json:"flow_cache_entries"`
	Quick       bool     `json:"quick"`
	Split       bool     `json:"split_cpus"`
	// Generator is the generator that ran: "live" or "loop".
	Generator string `json:"generator"`
	// TCPConfigs are the configurations bulk TCP ran through.
	TCPConfigs []string `json:"tcp_configs"`
	// Extern is the forwarder measured as configuration extern, when it
	// was.
	Extern       *Extern `json:"extern,omitempty"`
	CommandLine  string  `json:"command_line,omitempty"`
	FrameDetails string  `json:"frame"`
	// Checks: frames carried UDP checksums, and the -nocsum
	// configurations measured the offload ones without verifying them.
	Checks bool `json:"checks"`
}

// Cell is one configuration at one frame size and flow count.
type Cell struct {
	Config    string `json:"config"`
	Label     string `json:"label"`
	FrameSize int    `json:"frame_bytes"`
	Flows     int    `json:"flows"`
	// Error is set when the cell could not be measured or forwarded
	// (almost) nothing: it shows as FAIL, never as a rate.
	Error   string   `json:"error,omitempty"`
	Samples []Sample `json:"samples"`
	RxMpps  Summary  `json:"rx_mpps"`
	RxGbps  Summary  `json:"rx_gbps"`
	TxMpps  Summary  `json:"tx_mpps"`
	// RouterNs is the router's own cost per packet in ns: 1/rate minus
	// 1/rate of veth-direct (the generator straight into the counter) at
	// the same frame size and flows, which takes out what the generator
	// and the sink cost. Min comes from the fastest repeat, max from the
	// slowest. Absent where veth-direct was not measured.
	RouterNs *Summary `json:"router_ns_per_packet,omitempty"`
	// GenLimited: the sink received about everything the generator sent,
	// so the generator, not the router, set the rate.
	GenLimited bool `json:"generator_limited"`
	// AttachedAs is the hook fastpath had r0 on at the end of the windows
	// (auto shows its choice).
	AttachedAs string `json:"attached_as,omitempty"`
	// Establish describes the flows set up through the kernel first.
	Establish *Establish `json:"establish,omitempty"`
	// Profile is the router program's own cost, from the kernel's BPF
	// run-time statistics over a separate window (they slow it down).
	Profile *Profile `json:"profile,omitempty"`
	// Perf (--perf) is where the router's CPU spent the last window, by
	// symbol, largest first.
	Perf []PerfShare `json:"perf,omitempty"`
}

// Sample is one measurement window.
type Sample struct {
	DurationSec float64 `json:"duration_seconds"`
	RxPackets   uint64  `json:"rx_packets"` // counted by the sink
	RxBytes     uint64  `json:"rx_bytes"`
	TxPackets   uint64  `json:"tx_packets"` // generated
	RxMpps      float64 `json:"rx_mpps"`
	RxGbps      float64 `json:"rx_gbps"`
	TxMpps      float64 `json:"tx_mpps"`
	// Fastpath's own counters on the ingress, for daemon configurations:
	// forwarded by the fast path, and passed to the kernel (top reason).
	FastpathFwd   uint64 `json:"fastpath_forwarded,omitempty"`
	FastpathPass  uint64 `json:"fastpath_passed,omitempty"`
	TopPassReason string `json:"top_pass_reason,omitempty"`
}

// Establish describes how the cell's flows were established through the
// kernel: one exchange per flow in each direction.
type Establish struct {
	Flows     int     `json:"flows"`
	Replies   uint64  `json:"replies"`   // reply packets that came back to gen
	Conntrack int     `json:"conntrack"` // entries in rtr afterwards
	Took      float64 `json:"took_seconds"`
}

// Profile is BPF run-time statistics of the router's program on r0.
type Profile struct {
	Program   string  `json:"program"`
	Runs      uint64  `json:"runs"`
	NsPerRun  float64 `json:"ns_per_run"`
	WindowSec float64 `json:"window_seconds"`
}

// Summary is the median, minimum and maximum of a cell's samples.
type Summary struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// summarize returns the median, min and max of vs (zero for none). The
// median of an even count is the mean of the middle two.
func summarize(vs []float64) Summary {
	if len(vs) == 0 {
		return Summary{}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Summary{Median: med, Min: s[0], Max: s[n-1]}
}

// finish fills the summaries from the samples and decides whether the cell
// failed or was limited by the generator (split: only there does the
// generator run apart from the router; else it always runs at the pace of
// the whole path).
func (c *Cell) finish(split bool) {
	var rx, gb, tx []float64
	for _, s := range c.Samples {
		rx = append(rx, s.RxMpps)
		gb = append(gb, s.RxGbps)
		tx = append(tx, s.TxMpps)
	}
	c.RxMpps, c.RxGbps, c.TxMpps = summarize(rx), summarize(gb), summarize(tx)
	if c.Error != "" {
		return
	}
	switch {
	case len(c.Samples) == 0:
		c.Error = "no samples"
	case c.RxMpps.Median == 0:
		c.Error = "nothing forwarded"
	case c.TxMpps.Median > 0 && c.RxMpps.Median < failRatio*c.TxMpps.Median:
		c.Error = fmt.Sprintf("forwarded only %.2f%% of what was sent", 100*c.RxMpps.Median/c.TxMpps.Median)
	}
	c.GenLimited = split && c.Error == "" && c.RxMpps.Median >= genLimitRatio*c.TxMpps.Median
}

// Below failRatio of the offered load a configuration counts as failing,
// above genLimitRatio as limited by the generator.
const (
	failRatio     = 0.01
	genLimitRatio = 0.95
)

// busyLoad is the load average before the run above which the report warns
// that other work was running; after the run the bench's own busy thread
// counts one more.
const busyLoad = 1.0

// fillCosts sets every measured cell's RouterNs from the veth-direct cell
// of the same frame size and flows.
func (r *Report) fillCosts() {
	for i := range r.Cells {
		c := &r.Cells[i]
		v := r.Cell(ConfigVeth, c.FrameSize, c.Flows)
		if c.Config == ConfigVeth || c.Failed() || v == nil || v.Failed() || v.RxMpps.Median <= 0 || c.RxMpps.Min <= 0 {
			continue
		}
		wire := 1e3 / v.RxMpps.Median // ns per packet without a router
		c.RouterNs = &Summary{
			Median: round3(1e3/c.RxMpps.Median - wire),
			Min:    round3(1e3/c.RxMpps.Max - wire),
			Max:    round3(1e3/c.RxMpps.Min - wire),
		}
	}
}

// Failed reports whether the cell has no valid rate.
func (c *Cell) Failed() bool { return c.Error != "" }

// Cell returns the cell of config at size and flows, or nil.
func (r *Report) Cell(config string, size, flows int) *Cell {
	for i := range r.Cells {
		c := &r.Cells[i]
		if c.Config == config && c.FrameSize == size && c.Flows == flows {
			return c
		}
	}
	return nil
}

// Ratio is cell's median rate over the baseline's at the same size and
// flows; ok is false when either is missing or failed.
func (r *Report) Ratio(c *Cell) (float64, bool) {
	b := r.Cell(r.Baseline, c.FrameSize, c.Flows)
	if b == nil || b.Failed() || c.Failed() || b.RxMpps.Median == 0 {
		return 0, false
	}
	return c.RxMpps.Median / b.RxMpps.Median, true
}

// WriteJSON writes the report, indented, to w.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// SaveJSON writes the report to path.
func (r *Report) SaveJSON(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	if err := r.WriteJSON(f); err != nil {
		f.Close()
		return fmt.Errorf("write json %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write json %s: %w", path, err)
	}
	return nil
}

// groups returns the (frame size, flows) pairs of the report in order of
// first appearance in the settings (sizes outer, flows inner).
func (r *Report) groups() [][2]int {
	var out [][2]int
	for _, s := range r.Settings.FrameSizes {
		for _, f := range r.Settings.Flows {
			for _, c := range r.Cells {
				if c.FrameSize == s && c.Flows == f {
					out = append(out, [2]int{s, f})
					break
				}
			}
		}
	}
	return out
}

// WriteTable writes the results as a table: one block per frame size and
// flow count, one row per configuration, with the median rate in Mpps and
// Gbit/s, the spread of the repeats, and the ratio to the baseline.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "frame\tflows\tconfiguration\tMpps\tmin..max\tGbit/s\tvs %s\trouter ns/pkt\tmin..max\tnotes\t\n", r.baselineLabel())
	for gi, g := range r.groups() {
		if gi > 0 {
			fmt.Fprintf(tw, "\t\t\t\t\t\t\t\t\t\t\n")
		}
		for _, name := range r.Settings.Configs {
			c := r.Cell(name, g[0], g[1])
			if c == nil {
				continue
			}
			fmt.Fprintf(tw, "%d B\t%s\t%s\t", c.FrameSize, FlowsLabel(c.Flows), c.Label)
			if c.Failed() {
				fmt.Fprintf(tw, "0\tFAIL\t\t\t\t\t%s\t\n", c.Error)
				continue
			}
			ratio := "-"
			if v, ok := r.Ratio(c); ok {
				ratio = fmt.Sprintf("%.2fx", v)
			}
			cost, spread := "-", ""
			if c.RouterNs != nil {
				cost = fmt.Sprintf("%.0f", c.RouterNs.Median)
				spread = fmt.Sprintf("%.0f..%.0f", c.RouterNs.Min, c.RouterNs.Max)
			}
			fmt.Fprintf(tw, "%.2f\t%.2f..%.2f\t%.2f\t%s\t%s\t%s\t%s\t\n",
				c.RxMpps.Median, c.RxMpps.Min, c.RxMpps.Max, c.RxGbps.Median, ratio, cost, spread, c.notes())
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	how := "one CPU runs generator, router and sink counter"
	if r.Settings.Split {
		how = fmt.Sprintf("the router has CPU %d, the generator CPU %d; gen-limited: the sink got >= %.0f%% of what the generator sent",
			r.Machine.RouterCPU, r.Machine.GenCPU, 100*genLimitRatio)
	}
	if _, err := fmt.Fprintf(w, "\nMpps received by the sink: median of %d repeats of %s each; %s; generator: %s.\n"+
		"router ns/pkt: the router's own cost, 1/rate - 1/rate(%s) at the same size and flows.\n",
		r.Settings.Repeats, time.Duration(r.Settings.DurationSec*float64(time.Second)), how, r.Settings.Generator, ConfigVeth); err != nil {
		return err
	}
	if r.Settings.Checks {
		if _, err := fmt.Fprintf(w, "checks: the frames carry UDP checksums; \"no checksum check\" rows ran with nf_conntrack_checksum=0 in the router\n"+
			"(the datapath then verifies none): their router ns/pkt below the row above is what verifying costs.\n"); err != nil {
			return err
		}
	}
	if err := r.writePerf(w); err != nil {
		return err
	}
	if err := r.writeTCP(w); err != nil {
		return err
	}
	if err := r.writeLatency(w); err != nil {
		return err
	}
	if r.Machine.LoadBefore > busyLoad || r.Machine.LoadAfter > busyLoad+1 {
		_, err := fmt.Fprintf(w, "warning: the machine was busy (load average %.2f before, %.2f after): "+
			"other work shared the CPUs, the rates are low and noisy.\n", r.Machine.LoadBefore, r.Machine.LoadAfter)
		return err
	}
	return nil
}

// writeTCP writes the bulk TCP table and the socket-sent UDP table, if any.
func (r *Report) writeTCP(w io.Writer) error {
	if len(r.TCP) == 0 {
		return nil
	}
	repeats := r.Settings.Repeats
	if r.Settings.Quick {
		repeats = 1
	}
	for _, t := range []struct{ proto, title, unit, fmt string }{
		{"", "Bulk TCP, one stream gen -> sink (Gbit/s, median of %d; host offloads: tx checksum, TSO, GSO of g0 and s0):\n", "Gbit/s", "%.2f\t%.2f..%.2f"},
		{ProtoUDP64, "64-byte UDP frames sent by a socket in gen as fast as it can, received by one in sink (Mpps received, median of %d):\n", "Mpps", "%.3f\t%.3f..%.3f"},
	} {
		if !slices.ContainsFunc(r.TCP, func(c TCPCell) bool { return c.Proto == t.proto }) {
			continue
		}
		fmt.Fprintf(w, "\n"+t.title, repeats)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "configuration\tfamily\thost offloads\thook\t%s\tmin..max\tvs %s\trounds ahead\tnotes\t\n", t.unit, r.baselineLabel())
		for _, c := range r.TCP {
			if c.Proto != t.proto {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t", c.Label, c.Family, c.HostOffloads, orDash(c.AttachedAs))
			if c.Refused != "" {
				fmt.Fprintf(tw, "-\trefused\t\t\t%s\t\n", c.Refused)
				continue
			}
			if c.Failed() {
				fmt.Fprintf(tw, "0\tFAIL\t\t\t%s\t\n", c.Error)
				continue
			}
			ratio := "-"
			if v, ok := r.TCPRatio(&c); ok {
				ratio = fmt.Sprintf("%.2fx", v)
			}
			note := ""
			if c.Config == ConfigTCRedirect {
				note = "bound: no routing, no NAT"
			}
			if c.FastpathShare != nil {
				note = fmt.Sprintf("fastpath %.0f%%", 100**c.FastpathShare)
			}
			ahead := "-"
			if n, of, ok := r.TCPRoundsAhead(&c); ok && c.Config != r.Baseline {
				ahead = fmt.Sprintf("%d/%d", n, of)
			}
			fmt.Fprintf(tw, t.fmt+"\t%s\t%s\t%s\t\n", c.Gbps.Median, c.Gbps.Min, c.Gbps.Max, ratio, ahead, note)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "rounds ahead: in how many rounds the stream was at least as fast as the baseline's of the same round\n"+
		"(the configurations take turns, one stream per family and protocol each round).\n")
	return err
}

// TCPRatio is c's median over the baseline's at the same host offloads.
func (r *Report) TCPRatio(c *TCPCell) (float64, bool) {
	for _, b := range r.TCP {
		if b.Config == r.Baseline && b.HostOffloads == c.HostOffloads && b.Family == c.Family && b.Proto == c.Proto {
			if b.Failed() || c.Failed() || b.Gbps.Median == 0 {
				return 0, false
			}
			return c.Gbps.Median / b.Gbps.Median, true
		}
	}
	return 0, false
}

// writeLatency writes the round-trip table, if any.
func (r *Report) writeLatency(w io.Writer) error {
	if len(r.Latency) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nUDP request/response round trips gen -> sink -> gen (us), idle and while the generator sends half the measured rate:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "configuration\tp50\tp99\tp99.9\tlost\tload Mpps (sent)\tp50\tp99\tp99.9\tlost\t\n")
	rtt := func(x *RTT) string {
		if x == nil {
			return "-\t-\t-\t-"
		}
		return fmt.Sprintf("%.0f\t%.0f\t%.0f\t%d", x.P50, x.P99, x.P999, x.Lost)
	}
	for _, c := range r.Latency {
		if c.Error != "" && c.Idle == nil {
			fmt.Fprintf(tw, "%s\tFAIL\t\t\t\t\t\t\t\t%s\t\n", c.Label, c.Error)
			continue
		}
		load := "-"
		if c.LoadMpps > 0 {
			load = fmt.Sprintf("%.2f (%.2f)", c.LoadMpps, c.SentMpps)
		}
		loaded := rtt(c.Loaded)
		if c.Error != "" {
			loaded = "FAIL\t\t\t" + c.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", c.Label, rtt(c.Idle), load, loaded)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (r *Report) baselineLabel() string { return r.shortLabel(r.Baseline) }

// notes are the remarks of a row: generator-limited, fast-path share, the
// program's cost per packet.
func (c *Cell) notes() string {
	var n []string
	if c.GenLimited {
		n = append(n, "gen-limited")
	}
	var fwd, pass uint64
	reasons := map[string]int{}
	for _, s := range c.Samples {
		fwd += s.FastpathFwd
		pass += s.FastpathPass
		if s.TopPassReason != "" {
			reasons[s.TopPassReason]++
		}
	}
	if fwd+pass > 0 {
		share := fmt.Sprintf("fastpath %.0f%%", 100*float64(fwd)/float64(fwd+pass))
		if pass > 0 && len(reasons) > 0 {
			share += " (kernel: " + strings.Join(sortedKeys(reasons), ",") + ")"
		}
		n = append(n, share)
	}
	if c.Profile != nil && c.Profile.Runs > 0 {
		n = append(n, fmt.Sprintf("prog %.0f ns/pkt", c.Profile.NsPerRun))
	}
	return strings.Join(n, "; ")
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// FlowsLabel writes a flow count short: 1, 1k, 100k, 1M.
func FlowsLabel(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// rate returns count per second over d, in millions.
func rate(count uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(count) / d.Seconds() / 1e6
}

// gbps returns bytes over d as Gbit/s.
func gbps(bytes uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) * 8 / d.Seconds() / 1e9
}

// round3 rounds for stable JSON numbers.
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// writePerf writes each cell's CPU profile (--perf), if any: the symbols
// that took most of the router's CPU in the profile window.
func (r *Report) writePerf(w io.Writer) error {
	header := false
	for _, c := range r.Cells {
		if len(c.Perf) == 0 {
			continue
		}
		if !header {
			fmt.Fprintf(w, "\nWhere the router's CPU went (perf, cpu-clock samples of each cell's last window; the one-core method puts the generator and the counter on it too):\n")
			header = true
		}
		var parts []string
		for _, s := range c.Perf {
			parts = append(parts, fmt.Sprintf("%.1f%% %s", s.Percent, shortSymbol(s.Symbol)))
		}
		fmt.Fprintf(w, "  %s, %d B, %s: %s\n", c.Label, c.FrameSize, FlowsLabel(c.Flows), strings.Join(parts, ", "))
	}
	return nil
}

// shortSymbol names a JIT-compiled BPF program by its name alone
// (bpf_prog_<tag>_<name> -> bpf:<name>).
func shortSymbol(s string) string {
	if rest, ok := strings.CutPrefix(s, "bpf_prog_"); ok {
		if i := strings.IndexByte(rest, '_'); i > 0 {
			return "bpf:" + rest[i+1:]
		}
	}
	return s
}

// TCPRoundsAhead counts the rounds in which c's stream was at least as
// fast as the baseline's at the same host offloads, family and protocol
// (the i-th samples of each ran in the same round), out of the rounds both
// have.
func (r *Report) TCPRoundsAhead(c *TCPCell) (n, of int, ok bool) {
	for _, b := range r.TCP {
		if b.Config == r.Baseline && b.HostOffloads == c.HostOffloads && b.Family == c.Family && b.Proto == c.Proto {
			if b.Failed() || c.Failed() {
				return 0, 0, false
			}
			of = min(len(b.Samples), len(c.Samples))
			for i := range of {
				if c.Samples[i] >= b.Samples[i] {
					n++
				}
			}
			return n, of, of > 0
		}
	}
	return 0, 0, false
}

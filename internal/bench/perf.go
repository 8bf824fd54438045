package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The CPU profile of a cell (--perf): perf samples the CPU the router's
// work runs on (in the one-core method also the generator's and the
// counter's) during the profile window, and the report keeps the symbols
// that took the most of it. JIT-compiled BPF programs show as
// bpf_prog_<tag>_<name>. Software clock sampling: it works in VMs without
// hardware counters.

// PerfShare is one symbol's share of the sampled CPU's time.
type PerfShare struct {
	Symbol  string  `json:"symbol"`
	Percent float64 `json:"percent"`
}

// perfTop is how many symbols a cell's profile keeps, and the smallest
// share kept.
const (
	perfTop     = 15
	perfMinimum = 0.5
)

// PerfAvailable says why --perf cannot run here, or nil.
func PerfAvailable() error {
	if _, err := exec.LookPath("perf"); err != nil {
		return fmt.Errorf("--perf needs perf (Debian: apt install linux-perf): %w", err)
	}
	return nil
}

// perfRecording is a perf record of one CPU, started before a window.
type perfRecording struct {
	cmd  *exec.Cmd
	dir  string
	out  bytes.Buffer
	file string
}

// startPerf samples cpu for d.
func startPerf(ctx context.Context, cpu int, d time.Duration) (*perfRecording, error) {
	dir, err := os.MkdirTemp("", "fastpath-bench-perf-")
	if err != nil {
		return nil, err
	}
	p := &perfRecording{dir: dir, file: filepath.Join(dir, "perf.data")}
	p.cmd = exec.CommandContext(ctx, "perf", "record", "-q", "-e", "cpu-clock", "-C", strconv.Itoa(cpu), "-o", p.file,
		"--", "sleep", strconv.FormatFloat(d.Seconds(), 'f', 3, 64))
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("perf record: %w", err)
	}
	return p, nil
}

// finish waits for the recording and returns its top symbols.
func (p *perfRecording) finish(ctx context.Context) ([]PerfShare, error) {
	defer os.RemoveAll(p.dir)
	if err := p.cmd.Wait(); err != nil {
		return nil, fmt.Errorf("perf record: %w: %s", err, strings.TrimSpace(p.out.String()))
	}
	out, err := exec.CommandContext(ctx, "perf", "report", "-i", p.file, "--stdio", "-q", "--no-children",
		"--sort", "sym", "--percent-limit", strconv.FormatFloat(perfMinimum, 'f', 1, 64)).Output()
	if err != nil {
		return nil, fmt.Errorf("perf report: %w", err)
	}
	return parsePerfReport(out, perfTop), nil
}

// parsePerfReport reads `perf report --stdio -q --sort sym` lines such as
// "    12.34%  [k] bpf_prog_6deef7357e7b4530_fp_xdp" into at most n shares.
func parsePerfReport(out []byte, n int) []PerfShare {
	var shares []PerfShare
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() && len(shares) < n {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || !strings.HasSuffix(f[0], "%") || !strings.HasPrefix(f[1], "[") {
			continue
		}
		pct, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "%"), 64)
		if err != nil {
			continue
		}
		shares = append(shares, PerfShare{Symbol: strings.Join(f[2:], " "), Percent: pct})
	}
	return shares
}

// Package difftest plays the differential scripts of internal/difftest on
// fresh labs, without and with fastpath, and fails on every divergence
// beyond the documented bounds, printing the script that reproduces it.
//
//	go test ./test/difftest                        the fixed set (CI)
//	DIFFTEST_SEED=7 DIFFTEST_N=20 go test -run TestGenerated ./test/difftest
//	DIFFTEST_SCRIPT=f.script go test -run TestReplay ./test/difftest
//
// (`make difftest SEED=7 N=20`, `make difftest SCRIPT=f.script`.)
package difftest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/difftest"
)

// ciSeeds are the generated scripts the fixed set includes.
var ciSeeds = []uint64{12, 19}

// scriptTimeout bounds the runs of one script.
const scriptTimeout = 2 * time.Minute

// TestFixed: issue 9's cases and a few generated scripts.
func TestFixed(t *testing.T) {
	requireBinary(t)
	for _, s := range difftest.Fixed() {
		t.Run(s.Name, func(t *testing.T) { play(t, s) })
	}
	for _, seed := range ciSeeds {
		s := difftest.Generate(seed)
		t.Run(s.Name, func(t *testing.T) { play(t, s) })
	}
}

// TestGenerated plays DIFFTEST_N (default 10) generated scripts from seed
// DIFFTEST_SEED on.
func TestGenerated(t *testing.T) {
	requireBinary(t)
	seedText := os.Getenv("DIFFTEST_SEED")
	if seedText == "" {
		t.Skip("set DIFFTEST_SEED (and DIFFTEST_N) to play generated scripts: make difftest SEED=1 N=10")
	}
	seed, err := strconv.ParseUint(seedText, 10, 64)
	if err != nil {
		t.Fatalf("DIFFTEST_SEED: %v", err)
	}
	n := 10
	if v := os.Getenv("DIFFTEST_N"); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("DIFFTEST_N %q: want a positive number", v)
		}
	}
	for i := range uint64(n) {
		s := difftest.Generate(seed + i)
		t.Run(s.Name, func(t *testing.T) { play(t, s) })
	}
}

// TestReplay plays the script in file DIFFTEST_SCRIPT (as a failure
// printed it).
func TestReplay(t *testing.T) {
	requireBinary(t)
	path := os.Getenv("DIFFTEST_SCRIPT")
	if path == "" {
		t.Skip("set DIFFTEST_SCRIPT to a script file to replay it: make difftest SCRIPT=FILE")
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := difftest.Parse(string(text))
	if err != nil {
		t.Fatal(err)
	}
	play(t, s)
}

// attaches are the fastpath runs of every script, DIFFTEST_ATTACH
// (comma-separated) to narrow them: native XDP on hosts that finish their
// checksums (forced XDP refuses partial ones), and TC with the hosts'
// default offloads.
func attaches() []string {
	if v := os.Getenv("DIFFTEST_ATTACH"); v != "" {
		return strings.Split(v, ",")
	}
	return []string{"xdp", "tc"}
}

// play runs s on the kernel alone and then with fastpath for each attach
// mode, and compares.
func play(t *testing.T, s *difftest.Script) {
	bin := requireBinary(t)
	if s.Known != "" && os.Getenv("DIFFTEST_KNOWN") == "" {
		t.Skipf("known divergence, skipped (DIFFTEST_KNOWN=1 plays it): %s", s.Known)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	// The kernel's behaviour does not depend on the hosts' checksum
	// offload, so one baseline serves both fastpath runs.
	base, err := difftest.Run(ctx, s, difftest.RunOptions{HostTxChecksumOff: true, Log: log})
	if err != nil {
		t.Fatalf("kernel run: %v\n%s", err, s.Format())
	}
	for _, attach := range attaches() {
		o := difftest.RunOptions{Attach: attach, Binary: bin, HostTxChecksumOff: attach == "xdp", Log: log}
		run, err := difftest.Run(ctx, s, o)
		if err != nil {
			t.Errorf("%s run: %v\n%s", o.Mode(), err, s.Format())
			continue
		}
		c := difftest.Compare(s, base, run)
		var notOffloaded []string
		for _, f := range run.Flows {
			for _, sf := range s.Flows {
				// tcpconn connections are short: one may or may not be
				// in the cache at t0.
				if sf.Name == f.Name && sf.Proto != "icmp" && sf.Proto != "tcpconn" && !f.Offloaded {
					notOffloaded = append(notOffloaded, f.Name)
				}
			}
		}
		switch {
		case len(c.Divergences) > 0:
			t.Errorf("%s diverges from the kernel:\n%s\n%s", o.Mode(), c.Report, replayHint(t, s))
		case len(notOffloaded) > 0:
			t.Errorf("%s: flows %v were not offloaded when the script started: nothing was tested\n%s\n%s", o.Mode(), notOffloaded, c.Report, replayHint(t, s))
		default:
			t.Logf("%s", c.Report)
		}
	}
}

// replayHint writes the script to a file that outlives the test and says
// how to replay it.
func replayHint(t *testing.T, s *difftest.Script) string {
	path := filepath.Join(os.TempDir(), "fastpath-difftest-"+s.Name+".script")
	hint := "script:\n" + s.Format()
	if err := os.WriteFile(path, []byte(s.Format()), 0o644); err == nil {
		hint += "replay: make difftest SCRIPT=" + path
	}
	if s.Seed != 0 {
		hint += "\n    or: make difftest SEED=" + strconv.FormatUint(s.Seed, 10) + " N=1"
	}
	return hint
}

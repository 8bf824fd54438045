package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// TestRunSmoke measures one configuration for one second: the whole path
// (lab, generator, counter, report) works. Rates are not checked: they
// depend on the machine and whatever else runs on it.
func TestRunSmoke(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces and load BPF programs (run `sudo go test`)")
	}
	name := "bsmoke"
	if nsutil.Exists("fp-" + name + "-rtr") {
		t.Skipf("lab %s exists: another run is going on", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	r, err := Run(ctx, Options{
		Name:     name,
		Configs:  []string{ConfigKernel},
		Sizes:    []int{64},
		Flows:    []int{1},
		Repeats:  1,
		Duration: time.Second,
		Warmup:   200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("took %s", time.Since(start))
	if len(r.Cells) != 1 {
		t.Fatalf("%d cells, want 1", len(r.Cells))
	}
	c := r.Cells[0]
	if c.Failed() {
		t.Fatalf("kernel forwarding failed: %s (samples %+v)", c.Error, c.Samples)
	}
	// The two counters are read one after the other: a few frames in
	// flight may be counted received but not yet sent.
	if s := c.Samples[0]; s.RxPackets == 0 || s.RxPackets > s.TxPackets+s.TxPackets/100+genChunk {
		t.Errorf("sample %+v: want packets received, about no more than sent", s)
	}
	t.Logf("kernel forwarding, 64 B, 1 flow: %.2f Mpps (generator %.2f Mpps)", c.RxMpps.Median, c.TxMpps.Median)
	if nsutil.Exists("fp-" + name + "-rtr") {
		t.Error("the lab outlived the run")
	}
}

package bench

import (
	"context"
	"testing"
	"time"
)

// BenchmarkGenerators compares, side by side on one lab, the loop generator
// with sending every frame from a packet socket (one syscall a frame, the
// way the seeds and the flow set-up go out), both into a counter on r0 (the
// veth-direct configuration). docs/benchmarks.md quotes it:
//
//	go test -run '^$' -bench Generators -benchtime 3x ./internal/bench
func BenchmarkGenerators(b *testing.B) {
	if testing.Short() {
		b.Skip("needs root and a lab")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := testEnv(b, ctx, "bgbench", GenAuto)
	c, err := attachCounter(e.lab.Rtr, e.lab.RtrIn)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := e.gen.configure(e.frames(MinFrame), 1); err != nil {
		b.Fatal(err)
	}
	const window = time.Second
	rate := func(fn func()) float64 {
		n0, _, _ := c.read()
		t0 := time.Now()
		fn()
		n1, _, _ := c.read()
		return float64(n1-n0) / time.Since(t0).Seconds() / 1e6
	}
	for range b.N {
		loop := rate(func() {
			run := e.gen.start(ctx, 10*time.Second, 0)
			time.Sleep(window) // the measurement window
			if err := run.halt(); err != nil {
				b.Fatal(err)
			}
		})
		frame, _ := e.frames(MinFrame).frame()
		sock := rate(func() {
			at := pinned{ns: e.lab.Gen, cpu: e.genCPU}
			_ = at.do(func() error {
				for end := time.Now().Add(window); time.Now().Before(end); {
					for range 1000 {
						if err := e.inject.send(frame); err != nil {
							return err
						}
					}
				}
				return nil
			})
		})
		b.ReportMetric(loop, e.gen.kind()+"-Mpps")
		b.ReportMetric(sock, "packet-socket-Mpps")
	}
}

package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRouteMTU: a route with an MTU metric (not locked: bpf_fib_lookup
// alone would ignore it) added while the daemon runs is honoured as the
// kernel's forwarding honours it: larger packets go to the kernel, which
// answers frag-needed / packet-too-big with the route's MTU.
func TestRouteMTU(t *testing.T) {
	for _, attach := range []string{"xdp", "tc"} {
		t.Run(attach, func(t *testing.T) {
			ctx := testContext(t)
			l := newLab(t, attach)
			runDaemon(t, l.Rtr, routeIfaces(l, attach)...)
			mustPing(ctx, t, l, l.SinkAddr4, 2, "-M", "do", "-s", "1400") // fits the device MTU
			for _, args := range [][]string{
				{"ip", "route", "add", l.SinkAddr4.String() + "/32", "dev", l.RtrOut, "mtu", "1300"},
				{"ip", "-6", "route", "add", l.SinkAddr6.String() + "/128", "dev", l.RtrOut, "mtu", "1300"},
			} {
				if out, err := l.Command(ctx, l.Rtr, args[0], args[1:]...).CombinedOutput(); err != nil {
					t.Fatalf("%v: %v: %s", args, err, out)
				}
			}
			for _, c := range []struct{ flag, addr, want string }{
				{"-4", l.SinkAddr4.String(), "mtu = 1300"},
				{"-6", l.SinkAddr6.String(), "mtu=1300"},
			} {
				// The daemon mirrors route MTUs in the background: poll.
				pollUntil(t, 5*time.Second, "frag-needed with the route's MTU "+c.flag, func() error {
					out := pingOutput(ctx, t, l, l.Gen, c.flag, "-c1", "-W1", "-M", "do", "-s", "1400", c.addr)
					if !strings.Contains(out, c.want) {
						return errors.New(out)
					}
					return nil
				})
			}
		})
	}
}

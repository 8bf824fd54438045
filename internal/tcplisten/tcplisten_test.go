package tcplisten

import (
	"errors"
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

func TestNetwork(t *testing.T) {
	for addr, want := range map[string]string{
		"0.0.0.0:9469":       "tcp4",
		"127.0.0.1:9469":     "tcp4",
		"[::]:9469":          "tcp",
		"[fd00::1]:9469":     "tcp",
		"[::ffff:1.2.3.4]:1": "tcp",
		"localhost:9469":     "tcp",
		":9469":              "tcp",
		"nonsense":           "tcp",
	} {
		if got := Network(addr); got != want {
			t.Errorf("Network(%q) = %s, want %s", addr, got, want)
		}
	}
}

// TestIPv4WildcardIsIPv4Only: 0.0.0.0 does not answer on IPv6 loopback,
// in a namespace of the test's own (root only).
func TestIPv4WildcardIsIPv4Only(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	ns := fmt.Sprintf("fp-tcpl-%d", os.Getpid())
	if err := nsutil.Create(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsutil.Delete(ns) })
	err := nsutil.Do(ns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		l, err := Listen("0.0.0.0:0")
		if err != nil {
			return err
		}
		defer l.Close()
		_, port, _ := net.SplitHostPort(l.Addr().String())
		if c, err := net.Dial("tcp6", net.JoinHostPort("::1", port)); err == nil {
			c.Close()
			return errors.New("a listener on 0.0.0.0 took a connection to [::1]")
		}
		c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			return fmt.Errorf("0.0.0.0 refused 127.0.0.1: %w", err)
		}
		return c.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

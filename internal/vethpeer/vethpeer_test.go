package vethpeer

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/fastpath-router/fastpath/internal/nsutil"
	"github.com/fastpath-router/fastpath/internal/testio"
)

func runEthtool(t *testing.T, ns string, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "ethtool"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ethtool %v in %s: %v: %s", args, ns, err, out)
	}
}

// TestLookup finds a veth's peer in another namespace and in the same one,
// and follows its tx checksum offload both ways.
func TestLookup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces")
	}
	here, there := testio.Netns(t, "fpvp-"), testio.Netns(t, "fpvp-")
	err := nsutil.Do(here, func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "va"}, PeerName: "vb"}); err != nil {
			return err
		}
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vc"}, PeerName: "vd"}); err != nil {
			return err
		}
		vb, err := netlink.LinkByName("vb")
		if err != nil {
			return err
		}
		h, err := netns.GetFromPath(nsutil.Path(there))
		if err != nil {
			return err
		}
		defer h.Close()
		return netlink.LinkSetNsFd(vb, int(h))
	})
	if err != nil {
		t.Fatal(err)
	}
	f := NewFinder()
	lookup := func(name string) (Peer, error) {
		var p Peer
		err := nsutil.Do(here, func() error {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			p, err = f.Lookup(l)
			return err
		})
		return p, err
	}

	// Another namespace; veths start with tx checksum offload on.
	p, err := lookup("va")
	if err != nil || p.Name != "vb" || !p.PartialChecksums || !strings.HasSuffix(p.Netns, there) {
		t.Fatalf("va's peer: %+v, %v; want vb in %s, partial checksums", p, err, there)
	}
	runEthtool(t, there, "-K", "vb", "tx", "off")
	if p, err = lookup("va"); err != nil || p.PartialChecksums {
		t.Errorf("va's peer with tx off: %+v, %v", p, err)
	}
	runEthtool(t, there, "-K", "vb", "tx", "on")
	if p, err = lookup("va"); err != nil || !p.PartialChecksums {
		t.Errorf("va's peer with tx on again: %+v, %v", p, err)
	}

	// The same namespace.
	runEthtool(t, here, "-K", "vd", "tx", "off")
	if p, err = lookup("vc"); err != nil || p.Name != "vd" || p.Netns != "" || p.PartialChecksums {
		t.Errorf("vc's peer: %+v, %v; want vd here, no partial checksums", p, err)
	}

	// Not a veth.
	if _, err = lookup("lo"); !errors.Is(err, ErrNotVeth) {
		t.Errorf("lo: %v, want ErrNotVeth", err)
	}
}

// TestXDPSent sums the counters of frames a veth sent by XDP, every queue's,
// and nothing else.
func TestXDPSent(t *testing.T) {
	st := map[string]uint64{
		"peer_ifindex":               7,
		"rx_queue_0_xdp_packets":     1000,
		"rx_queue_0_xdp_tx":          3,
		"rx_queue_1_xdp_tx_errors":   5,
		"rx_queue_0_xdp_redirect":    11,
		"tx_queue_0_xdp_xmit":        20,
		"tx_queue_3_xdp_xmit_errors": 40,
		"tx_queue_0_xdp_xmit_bytes":  999,
	}
	if got := xdpSent(st); got != 68 {
		t.Errorf("xdpSent %d, want 68 (3 + 5 + 20 + 40)", got)
	}
	if got := xdpSent(nil); got != 0 {
		t.Errorf("xdpSent of nothing %d", got)
	}
}

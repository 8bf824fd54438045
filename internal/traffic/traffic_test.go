package traffic

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/lab"
	"github.com/fastpath-router/fastpath/internal/nsutil"
)

const snmpFixture = `Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates OutTransmits
Ip: 1 64 6040 0 0 2010 0 0 4030 4030 0 0 0 0 0 0 0 0 0 6040
Icmp: InMsgs InErrors InCsumErrors InDestUnreachs
Icmp: 5 0 0 0
`

const snmp6Fixture = `Ip6InReceives                   	2033
Ip6InHdrErrors                  	0
Ip6OutForwDatagrams             	2017
Ip6InDelivers                   	16
`

func TestParseSNMP(t *testing.T) {
	v, err := parseSNMP([]byte(snmpFixture), "Ip", "ForwDatagrams")
	if err != nil || v != 2010 {
		t.Errorf("ForwDatagrams = %d, %v; want 2010", v, err)
	}
	if v, err := parseSNMP([]byte(snmpFixture), "Icmp", "InMsgs"); err != nil || v != 5 {
		t.Errorf("Icmp InMsgs = %d, %v; want 5", v, err)
	}
	for _, bad := range []struct{ in, group, field string }{
		{snmpFixture, "Ip", "NoSuchField"},
		{snmpFixture, "Tcp", "ActiveOpens"},
		{"Ip: Forwarding ForwDatagrams\nIp: 1\n", "Ip", "ForwDatagrams"},
		{"Ip: Forwarding ForwDatagrams\nIp: 1 x\n", "Ip", "ForwDatagrams"},
	} {
		if _, err := parseSNMP([]byte(bad.in), bad.group, bad.field); err == nil {
			t.Errorf("parseSNMP(%q, %s, %s) succeeded", bad.in, bad.group, bad.field)
		}
	}
}

func TestParseSNMP6(t *testing.T) {
	v, err := parseSNMP6([]byte(snmp6Fixture), "Ip6OutForwDatagrams")
	if err != nil || v != 2017 {
		t.Errorf("Ip6OutForwDatagrams = %d, %v; want 2017", v, err)
	}
	if _, err := parseSNMP6([]byte(snmp6Fixture), "Ip6Nope"); err == nil {
		t.Error("missing counter found")
	}
}

func TestResultMath(t *testing.T) {
	u := UDPResult{Sent: 200, Received: 190}
	if u.Lost() != 10 || u.LossRatio() != 0.05 {
		t.Errorf("Lost %d ratio %v", u.Lost(), u.LossRatio())
	}
	if (UDPResult{}).LossRatio() != 0 {
		t.Error("loss ratio of nothing sent is not 0")
	}
	tr := TCPResult{Sent: 125_000_000, Received: 125_000_000, Duration: time.Second}
	if tr.Gbps() != 1 || !tr.OK() {
		t.Errorf("Gbps %v OK %v", tr.Gbps(), tr.OK())
	}
	tr.RecvSHA256[0] = 1
	if tr.OK() {
		t.Error("OK with different hashes")
	}
}

func TestBadArguments(t *testing.T) {
	ctx := context.Background()
	ap := netip.MustParseAddrPort("198.18.2.1:0")
	if _, err := UDPStream(ctx, "x", "y", ap, 10, 8, 0); err == nil {
		t.Error("UDPStream accepted a size below the header")
	}
	if _, err := UDPStream(ctx, "x", "y", ap, 0, 64, 0); err == nil {
		t.Error("UDPStream accepted count 0")
	}
	if _, err := TCPTransfer(ctx, "x", "y", ap, -1); err == nil {
		t.Error("TCPTransfer accepted a negative size")
	}
}

// TestKernelPath runs every helper across a lab with plain kernel
// forwarding (no fastpath): the baseline the demo compares against.
func TestKernelPath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces (run `sudo go test`)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := make([]byte, 3)
	rand.Read(b)
	name := "t" + hex.EncodeToString(b)
	t.Cleanup(func() {
		if err := lab.Down(name); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	l, err := lab.Up(ctx, lab.Options{Name: name})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}

	for _, fam := range []struct {
		name string
		dst  netip.Addr
	}{{"IPv4", l.SinkAddr4}, {"IPv6", l.SinkAddr6}} {
		t.Run(fam.name, func(t *testing.T) {
			v4a, v6a, err := KernelForwarded(l.Rtr)
			if err != nil {
				t.Fatal(err)
			}

			p, err := Ping(ctx, l, l.Gen, fam.dst.String(), 3, "-i", "0.2", "-W", "2")
			if err != nil || !p.OK() {
				t.Errorf("ping: %+v, %v", p, err)
			}

			const size = 8 << 20
			tr, err := TCPTransfer(ctx, l.Gen, l.Sink, netip.AddrPortFrom(fam.dst, 0), size)
			if err != nil {
				t.Fatalf("tcp: %v", err)
			}
			if tr.Sent != size || !tr.OK() {
				t.Errorf("tcp: %+v", tr)
			}
			t.Logf("tcp: %d bytes in %s (%.2f Gbit/s)", tr.Received, tr.Duration, tr.Gbps())

			const count = 2000
			u, err := UDPStream(ctx, l.Gen, l.Sink, netip.AddrPortFrom(fam.dst, 0), count, 512, 100*time.Microsecond)
			if err != nil {
				t.Fatalf("udp: %v", err)
			}
			t.Logf("udp: %+v", u)
			if u.Sent != count || u.Received < count*95/100 || u.Duplicates != 0 {
				t.Errorf("udp: sent %d received %d duplicates %d (sink: %s)", u.Sent, u.Received, u.Duplicates, udpDrops(l.Sink))
			}

			v4b, v6b, err := KernelForwarded(l.Rtr)
			if err != nil {
				t.Fatal(err)
			}
			delta, other := v4b-v4a, v6b-v6a
			if fam.dst.Is6() {
				delta, other = other, delta
			}
			// Requests and replies of ping, every UDP datagram that
			// arrived, and TCP segments on top.
			if min := uint64(2*p.Received + u.Received); delta < min {
				t.Errorf("kernel forwarded %d %s datagrams, want at least %d", delta, fam.name, min)
			}
			if other > 10 {
				t.Errorf("kernel forwarded %d datagrams of the other family", other)
			}
			t.Logf("kernel forwarded %d %s datagrams", delta, fam.name)
		})
	}

	// Time bounds: a transfer too big for its context ends with an error,
	// promptly, and so does a stream.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	start := time.Now()
	if _, err := TCPTransfer(short, l.Gen, l.Sink, netip.AddrPortFrom(l.SinkAddr4, 0), 1<<40); err == nil {
		t.Error("1 TiB tcp transfer finished within 300ms")
	}
	if _, err := UDPStream(short, l.Gen, l.Sink, netip.AddrPortFrom(l.SinkAddr4, 0), 1000, 64, time.Second); err == nil {
		t.Error("udp stream of 1000 s finished within 300ms")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("cancelled transfers took %s", took)
	}

	// A listener nobody reaches: a refused dial is an error, not a hang.
	if _, err := TCPTransfer(ctx, l.Gen, l.Sink, netip.AddrPortFrom(netip.MustParseAddr("198.18.2.99"), 9), 1); err == nil {
		t.Error("tcp transfer to an address not in sink succeeded")
	}
}

// udpDrops describes the UDP receive-buffer overflows in namespace ns, to
// tell a starved receiver from loss on the way.
func udpDrops(ns string) string {
	var snmp, snmp6 []byte
	if err := nsutil.Do(ns, func() error {
		var err error
		if snmp, err = os.ReadFile("/proc/thread-self/net/snmp"); err != nil {
			return err
		}
		snmp6, err = os.ReadFile("/proc/thread-self/net/snmp6")
		return err
	}); err != nil {
		return err.Error()
	}
	v4, err4 := parseSNMP(snmp, "Udp", "RcvbufErrors")
	v6, err6 := parseSNMP6(snmp6, "Udp6RcvbufErrors")
	return fmt.Sprintf("RcvbufErrors %d (%v), Udp6RcvbufErrors %d (%v)", v4, err4, v6, err6)
}

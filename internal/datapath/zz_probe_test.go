package datapath

import (
	"testing"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
	"net"
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func TestZZProbe(t *testing.T) {
	tn := newTestNet(t)
	for _, h := range []Hook{HookTC, HookXDP} {
	tn.must(t, func() error {
		l, err := tn.d.Attach(tn.in0, h)
		if err != nil { return err }
		t.Cleanup(func() { l.Close() })
		ifi, _ := net.InterfaceByName("in0p")
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil { return err }
		defer unix.Close(fd)
		p := udp4(ipDst)
		p.tpids = []layers.EthernetType{layers.EthernetTypeDot1Q}
		fr := p.bytes(t)
		for i := 0; i < 3; i++ {
		if err := unix.Sendto(fd, fr, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(unix.ETH_P_ALL)}); err != nil { return err }
		}
		return nil
	})
	s, _ := tn.stats(t, tn.in0)
	t.Logf("%s: fwd=%d pass=%d reasons=%v", h, s.FwdPackets, s.PassPackets, s.PassReason)
	}
}

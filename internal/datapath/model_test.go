package datapath

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
)

// modelXDP is a reference model, written from DESIGN §2.1 and the test
// router's routes rather than from the C, of the XDP program in route mode
// on in0. It returns the frame the program must emit when it forwards, or
// nil when the frame belongs to the kernel.
func modelXDP(frame []byte) []byte {
	if len(frame) < 14 || !bytes.Equal(frame[0:6], macIn0) {
		return nil
	}
	l3 := frame[14:]
	var ok bool
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		ok = modelIPv4(l3)
	case 0x86dd:
		ok = modelIPv6(l3)
	}
	if !ok {
		return nil // includes every VLAN tag: the kernel owns VLANs
	}
	return forwarded(frame)
}

func modelIPv4(l3 []byte) bool {
	if len(l3) < 20 || l3[0]>>4 != 4 || l3[0]&0x0f != 5 {
		return false
	}
	totLen := int(binary.BigEndian.Uint16(l3[2:]))
	if totLen < 20 || totLen > len(l3) {
		return false
	}
	if binary.BigEndian.Uint16(l3[6:])&0x3fff != 0 { // MF or offset
		return false
	}
	if ipv4Checksum(l3[:20]) != binary.BigEndian.Uint16(l3[10:]) {
		return false // the kernel's receive path drops it
	}
	src, dst := net.IP(l3[12:16]), net.IP(l3[16:20])
	if special4(src) || special4(dst) || l3[8] <= 1 || localSource4(src) {
		return false
	}
	if !modelL4(l3[9], l3[20:totLen], false) {
		return false
	}
	mtu := 0
	switch {
	case dst.Equal(ipNhop) || cidr("198.18.30.0/24").Contains(dst):
		mtu = out0MTU
	case cidr("198.18.31.0/24").Contains(dst), cidr("198.18.32.0/24").Contains(dst):
		mtu = routeMTU
	}
	return totLen <= mtu
}

func modelIPv6(l3 []byte) bool {
	if len(l3) < 40 || l3[0]>>4 != 6 {
		return false
	}
	plen := int(binary.BigEndian.Uint16(l3[4:]))
	if plen == 0 || 40+plen > len(l3) {
		return false
	}
	src, dst := net.IP(l3[8:24]), net.IP(l3[24:40])
	if special6(src) || special6(dst) || l3[7] <= 1 {
		return false
	}
	if !modelL4(l3[6], l3[40:40+plen], true) {
		return false
	}
	mtu := 0
	switch {
	case dst.Equal(ip6Nhop) || cidr("fd00:30::/64").Contains(dst):
		mtu = out0MTU
	case cidr("fd00:31::/64").Contains(dst), cidr("fd00:32::/64").Contains(dst):
		mtu = routeMTU
	}
	return 40+plen <= mtu
}

// modelL4: TCP, UDP and the family's own ICMP, with their headers (ports,
// or ICMP type/code/checksum) inside the IP payload l4 (never in Ethernet
// padding after it), a TCP header length that fits it and a UDP length
// equal to it.
func modelL4(proto byte, l4 []byte, v6 bool) bool {
	switch {
	case proto == 6:
		return len(l4) >= 20 && l4[12]>>4 >= 5 && int(l4[12]>>4)*4 <= len(l4)
	case proto == 17:
		if len(l4) < 8 {
			return false
		}
		return int(binary.BigEndian.Uint16(l4[4:])) == len(l4)
	case proto == 1 && !v6, proto == 58 && v6:
		return len(l4) >= 4
	}
	return false
}

// special4: never forwarded whatever the FIB says.
func special4(a net.IP) bool {
	return a[0] == 0 || a[0] == 127 || a[0]&0xf0 == 0xe0 || a.Equal(net.IPv4bcast)
}

// localSource4: a source address of the test router's own (or one of its
// subnets' broadcast addresses), which the kernel drops as a martian.
func localSource4(a net.IP) bool {
	for _, l := range []string{"198.18.10.1", "198.18.20.1", "198.18.70.1", "198.18.10.255", "198.18.20.255", "198.18.70.255"} {
		if a.Equal(net.ParseIP(l)) {
			return true
		}
	}
	return false
}

func special6(a net.IP) bool {
	return a[0] == 0xff || (a[0] == 0xfe && a[1]&0xc0 == 0x80) ||
		a.Equal(net.IPv6unspecified) || a.Equal(net.IPv6loopback)
}

func cidr(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// onesSum is the folded ones' complement sum of b, with 0xffff and 0 (the
// two zeros) mapped to 0.
func onesSum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	if sum == 0xffff {
		return 0
	}
	return uint16(sum)
}

// checkForwarded compares the program's output for a forwarded frame with
// the model's, byte for byte (the model forwards no IPv4 header with a wrong
// checksum).
func checkForwarded(in, got, want []byte) error {
	if len(got) != len(want) {
		return fmt.Errorf("output is %d bytes, want %d", len(got), len(want))
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("output %s", diffBytes(got, want))
	}
	return nil
}

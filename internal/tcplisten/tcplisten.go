// Package tcplisten listens on a TCP address as an operator writes it:
// an IPv4 address, 0.0.0.0 included, on IPv4 only. Go's net.Listen("tcp",
// "0.0.0.0:p") opens a dual-stack socket that also answers on every IPv6
// address, which a firewall written for IPv4 does not cover.
package tcplisten

import (
	"net"
	"net/netip"
)

// Listen listens on addr ("host:port"): "tcp4" for an IPv4 host, "tcp"
// for anything else (an IPv6 host, "[::]" as the system's IPv6 sockets do:
// every address, IPv4 too by default; a name; an empty host: every
// address of both families).
func Listen(addr string) (net.Listener, error) {
	return net.Listen(Network(addr), addr)
}

// Network is the network Listen uses for addr.
func Network(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "tcp" // net.Listen reports the error
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		return "tcp4"
	}
	return "tcp"
}

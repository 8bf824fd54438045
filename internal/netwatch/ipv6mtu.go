package netwatch

import (
	"os"
	"strconv"
	"strings"
)

// IPv6MTU reads net.ipv6.conf.NAME.mtu in the calling thread's network
// namespace: the MTU the kernel's IPv6 routes through the device use (a
// router advertisement's MTU option sets it), 0 if the device has no IPv6
// or the name is not a plain device name.
func IPv6MTU(name string) int {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return 0
	}
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + name + "/mtu")
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

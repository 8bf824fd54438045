package netwatch

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolGGRO is ETHTOOL_GGRO (linux/ethtool.h): is generic receive
// offload on?
const ethtoolGGRO = 0x0000002b

// GROEnabled says whether generic receive offload is on for device name, in
// the calling thread's network namespace (`ethtool -k NAME`:
// generic-receive-offload). A feature change sends a link event.
func GROEnabled(name string) (bool, error) {
	if len(name) >= unix.IFNAMSIZ {
		return false, fmt.Errorf("interface name %q too long", name)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	val := struct{ cmd, data uint32 }{cmd: ethtoolGGRO}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data uintptr
		_    [16]byte // the rest of struct ifreq's union
	}
	copy(ifr.name[:], name)
	ifr.data = uintptr(unsafe.Pointer(&val))
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return false, fmt.Errorf("ethtool GRO of %s: %w", name, errno)
	}
	return val.data != 0, nil
}

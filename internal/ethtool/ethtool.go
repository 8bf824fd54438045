// Package ethtool reads the device features fastpath decides on, with
// ethtool's legacy get commands (the SIOCETHTOOL ioctl), in the calling
// thread's network namespace.
package ethtool

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Legacy get commands (include/uapi/linux/ethtool.h), each answering 1 when
// the feature is on.
const (
	getTxCsum = 0x16 // ETHTOOL_GTXCSUM: any tx checksum feature
	getGRO    = 0x2b // ETHTOOL_GGRO: generic receive offload
)

// TxChecksum reports whether device name has tx checksum offload on.
func TxChecksum(name string) (bool, error) { return get(name, getTxCsum, "tx checksum") }

// GRO reports whether device name merges received segments (GRO). A
// feature change sends a link event.
func GRO(name string) (bool, error) { return get(name, getGRO, "GRO") }

// value is struct ethtool_value.
type value struct {
	cmd, data uint32
}

// ifreq is struct ifreq with ifr_data set.
type ifreq struct {
	name [unix.IFNAMSIZ]byte
	data uintptr
	_    [16]byte // the rest of the union
}

func get(name string, cmd uint32, what string) (bool, error) {
	if len(name) >= unix.IFNAMSIZ {
		return false, fmt.Errorf("interface name %q too long", name)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	v := &value{cmd: cmd} // on the heap: Go does not move it
	req := &ifreq{}
	copy(req.name[:], name)
	req.data = uintptr(unsafe.Pointer(v))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(req)))
	runtime.KeepAlive(v)
	if errno != 0 {
		return false, fmt.Errorf("ethtool: %s of %s: %w", what, name, errno)
	}
	return v.data != 0, nil
}

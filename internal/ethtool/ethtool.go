// Package ethtool reads the device features and driver statistics fastpath
// decides on, with ethtool's legacy get commands (the SIOCETHTOOL ioctl),
// in the calling thread's network namespace.
package ethtool

import (
	"bytes"
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

// Statistics commands: the count of the driver's statistics, their names
// and their values (ethtool -S).
const (
	getSsetInfo = 0x37 // ETHTOOL_GSSET_INFO
	getStrings  = 0x1b // ETHTOOL_GSTRINGS
	getStats    = 0x1d // ETHTOOL_GSTATS
	ssStats     = 1    // ETH_SS_STATS
	gstringLen  = 32   // ETH_GSTRING_LEN
	maxStats    = 4096 // far above any driver's; bounds what a reply can make us allocate
)

// TxChecksum reports whether device name has tx checksum offload on.
func TxChecksum(name string) (bool, error) { return get(name, getTxCsum, "tx checksum") }

// GRO reports whether device name merges received segments (GRO). A
// feature change sends a link event.
func GRO(name string) (bool, error) { return get(name, getGRO, "GRO") }

// ifreq is struct ifreq with ifr_data set.
type ifreq struct {
	name [unix.IFNAMSIZ]byte
	data uintptr
	_    [16]byte // the rest of the union
}

func get(name string, cmd uint32, what string) (bool, error) {
	v := make([]uint32, 2)
	v[0] = cmd
	if err := ioctl(name, unsafe.Pointer(&v[0]), what); err != nil {
		return false, err
	}
	return v[1] != 0, nil
}

// Stats returns the driver's statistics of device name by their names, as
// ethtool -S prints them.
func Stats(name string) (map[string]uint64, error) {
	// struct ethtool_sset_info: cmd, reserved, sset_mask (u64), then one
	// u32 per set in the mask.
	info := make([]uint32, 5)
	info[0] = getSsetInfo
	info[2] = 1 << ssStats
	if err := ioctl(name, unsafe.Pointer(&info[0]), "statistics count"); err != nil {
		return nil, err
	}
	n := info[4]
	if info[2] == 0 || n == 0 {
		return map[string]uint64{}, nil
	}
	if n > maxStats {
		return nil, fmt.Errorf("ethtool: %s reports %d statistics", name, n)
	}
	// struct ethtool_gstrings: cmd, string_set, len, then len names of 32
	// bytes. A u32 slice keeps the header aligned.
	strs := make([]uint32, 3+int(n)*gstringLen/4)
	strs[0], strs[1], strs[2] = getStrings, ssStats, n
	if err := ioctl(name, unsafe.Pointer(&strs[0]), "statistics names"); err != nil {
		return nil, err
	}
	// struct ethtool_stats: cmd, n_stats, then n_stats u64 values.
	vals := make([]uint64, 1+int(n))
	hdr := (*[2]uint32)(unsafe.Pointer(&vals[0]))
	hdr[0], hdr[1] = getStats, n
	if err := ioctl(name, unsafe.Pointer(&vals[0]), "statistics"); err != nil {
		return nil, err
	}
	if hdr[1] < n { // the device's count shrank between the calls
		n = hdr[1]
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&strs[3])), int(n)*gstringLen)
	out := make(map[string]uint64, n)
	for i := range int(n) {
		s := raw[i*gstringLen : (i+1)*gstringLen]
		if j := bytes.IndexByte(s, 0); j >= 0 {
			s = s[:j]
		}
		out[string(s)] = vals[1+i]
	}
	runtime.KeepAlive(strs)
	return out, nil
}

// ioctl runs one SIOCETHTOOL command on device name; data points at the
// command's struct, on the Go heap (which does not move it).
func ioctl(name string, data unsafe.Pointer, what string) error {
	if len(name) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", name)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	req := &ifreq{}
	copy(req.name[:], name)
	req.data = uintptr(data)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(req)))
	runtime.KeepAlive(req)
	if errno != 0 {
		return fmt.Errorf("ethtool: %s of %s: %w", what, name, errno)
	}
	return nil
}

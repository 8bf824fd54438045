// Package ethtool reads the device features and driver statistics fastpath
// decides on, with ethtool's legacy get commands (the SIOCETHTOOL ioctl),
// in the calling thread's network namespace.
package ethtool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
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

// ifreq is struct ifreq with ifr_data set: a pointer, so that Go's stack
// copying and the garbage collector see it.
type ifreq struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
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

// ssetInfo is struct ethtool_sset_info asking for one string set.
type ssetInfo struct {
	cmd, reserved uint32
	mask          uint64
	count         uint32
	_             uint32
}

// errCountChanged: the driver's count of statistics changed between two
// commands (a veth's follows its queue count).
var errCountChanged = errors.New("the number of statistics changed while reading them")

// Stats returns the driver's statistics of device name by their names, as
// ethtool -S prints them.
func Stats(name string) (map[string]uint64, error) {
	var err error
	for range 3 {
		var st map[string]uint64
		if st, err = stats(name); !errors.Is(err, errCountChanged) {
			return st, err
		}
	}
	return nil, fmt.Errorf("ethtool: statistics of %s: %w", name, err)
}

func stats(name string) (map[string]uint64, error) {
	info := &ssetInfo{cmd: getSsetInfo, mask: 1 << ssStats}
	if err := ioctl(name, unsafe.Pointer(info), "statistics count"); err != nil {
		return nil, err
	}
	n := info.count
	if info.mask == 0 || n == 0 {
		return map[string]uint64{}, nil
	}
	if n > maxStats {
		return nil, fmt.Errorf("ethtool: %s reports %d statistics", name, n)
	}
	// struct ethtool_gstrings: cmd, string_set, len, then len names of 32
	// bytes; struct ethtool_stats: cmd, n_stats, then n_stats u64 values.
	strs, freeStrs, err := kernelBuf(12 + int(n)*gstringLen)
	if err != nil {
		return nil, err
	}
	defer freeStrs()
	sh := (*[3]uint32)(unsafe.Pointer(&strs[0]))
	sh[0], sh[1], sh[2] = getStrings, ssStats, n
	if err := ioctl(name, unsafe.Pointer(&strs[0]), "statistics names"); err != nil {
		return nil, countChanged(err)
	}
	vals, freeVals, err := kernelBuf(8 + int(n)*8)
	if err != nil {
		return nil, err
	}
	defer freeVals()
	vh := (*[2]uint32)(unsafe.Pointer(&vals[0]))
	vh[0], vh[1] = getStats, n
	if err := ioctl(name, unsafe.Pointer(&vals[0]), "statistics"); err != nil {
		return nil, countChanged(err)
	}
	if sh[2] != n || vh[1] != n {
		return nil, errCountChanged
	}
	v := unsafe.Slice((*uint64)(unsafe.Pointer(&vals[8])), n)
	out := make(map[string]uint64, n)
	for i := range int(n) {
		s := strs[12+i*gstringLen : 12+(i+1)*gstringLen]
		if j := bytes.IndexByte(s, 0); j >= 0 {
			s = s[:j]
		}
		out[string(s)] = v[i]
	}
	return out, nil
}

// countChanged reads EFAULT, an overrun into kernelBuf's guard page, as
// the count having grown.
func countChanged(err error) error {
	if errors.Is(err, unix.EFAULT) {
		return errCountChanged
	}
	return err
}

// kernelBuf maps size bytes (page aligned, rounded up to pages) outside
// Go's heap for a reply the kernel sizes itself: GSTRINGS and GSTATS write
// as many entries as the driver counts at that moment, whatever the
// caller allotted. A page the kernel cannot write follows, so an overrun
// fails with EFAULT instead of writing over anything.
func kernelBuf(size int) ([]byte, func(), error) {
	page := os.Getpagesize()
	n := (size + page - 1) / page * page
	m, err := unix.Mmap(-1, 0, n+page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, nil, fmt.Errorf("ethtool buffer: %w", err)
	}
	if err := unix.Mprotect(m[n:], unix.PROT_NONE); err != nil {
		unix.Munmap(m)
		return nil, nil, fmt.Errorf("ethtool buffer guard: %w", err)
	}
	return m[:n], func() { unix.Munmap(m) }, nil
}

// ioctl runs one SIOCETHTOOL command on device name; data points at the
// command's struct.
func ioctl(name string, data unsafe.Pointer, what string) error {
	if len(name) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", name)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	req := &ifreq{data: data}
	copy(req.name[:], name)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(req)))
	runtime.KeepAlive(req)
	if errno != 0 {
		return fmt.Errorf("ethtool: %s of %s: %w", what, name, errno)
	}
	return nil
}

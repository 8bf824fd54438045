package traffic

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// KernelForwarded returns how many IPv4 and IPv6 datagrams the kernel of
// namespace ns has forwarded (Ip: ForwDatagrams in /proc/net/snmp,
// Ip6OutForwDatagrams in /proc/net/snmp6). Packets fastpath forwards in XDP
// or TC never reach the kernel's forwarding code, so they do not count here.
func KernelForwarded(ns string) (v4, v6 uint64, err error) {
	var snmp, snmp6 []byte
	// /proc/net is a link to /proc/self/net, the namespace of the process's
	// main thread, not of the thread inside Do: read via thread-self.
	if err := nsutil.Do(ns, func() error {
		var err error
		if snmp, err = os.ReadFile("/proc/thread-self/net/snmp"); err != nil {
			return err
		}
		snmp6, err = os.ReadFile("/proc/thread-self/net/snmp6")
		return err
	}); err != nil {
		return 0, 0, fmt.Errorf("read forwarding counters in %s: %w", ns, err)
	}
	if v4, err = parseSNMP(snmp, "Ip", "ForwDatagrams"); err != nil {
		return 0, 0, fmt.Errorf("read forwarding counters in %s: %w", ns, err)
	}
	if v6, err = parseSNMP6(snmp6, "Ip6OutForwDatagrams"); err != nil {
		return 0, 0, fmt.Errorf("read forwarding counters in %s: %w", ns, err)
	}
	return v4, v6, nil
}

// parseSNMP finds field in /proc/net/snmp, where each group is two lines:
// "Group: name name ..." then "Group: value value ...".
func parseSNMP(b []byte, group, field string) (uint64, error) {
	prefix := group + ":"
	var header []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != prefix {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i, name := range header {
			if name != field {
				continue
			}
			if i >= len(f) {
				return 0, fmt.Errorf("snmp %s %s: value line too short", group, field)
			}
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("snmp %s %s: %w", group, field, err)
			}
			return v, nil
		}
		return 0, fmt.Errorf("snmp: no field %s in group %s", field, group)
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("snmp: %w", err)
	}
	return 0, fmt.Errorf("snmp: no group %s", group)
}

// parseSNMP6 finds name in /proc/net/snmp6, one "name value" per line.
func parseSNMP6(b []byte, name string) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || f[0] != name {
			continue
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("snmp6 %s: %w", name, err)
		}
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("snmp6: %w", err)
	}
	return 0, fmt.Errorf("snmp6: no counter %s", name)
}

package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The netdev generic netlink family's NAPI query (include/uapi/linux/netdev.h).
const (
	netdevFamily   = "netdev"
	cmdNapiGet     = 11 // NETDEV_CMD_NAPI_GET
	attrNapiIfidx  = 1  // NETDEV_A_NAPI_IFINDEX
	attrNapiID     = 2  // NETDEV_A_NAPI_ID
	attrNapiThread = 4  // NETDEV_A_NAPI_PID: the kthread of a threaded NAPI
)

// napiThreads returns the PIDs of the NAPI kthreads of the device ifindex
// in the calling thread's netns (threaded NAPI must be on).
func napiThreads(ifindex int) ([]int, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("dial generic netlink: %w", err)
	}
	defer c.Close()
	f, err := c.GetFamily(netdevFamily)
	if err != nil {
		return nil, fmt.Errorf("generic netlink family %s: %w", netdevFamily, err)
	}
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrNapiIfidx, uint32(ifindex))
	req, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	msgs, err := c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmdNapiGet, Version: f.Version},
		Data:   req,
	}, f.ID, netlink.Request|netlink.Dump)
	if err != nil {
		return nil, fmt.Errorf("napi-get dump for ifindex %d: %w", ifindex, err)
	}
	var pids []int
	for _, m := range msgs {
		ad, err := netlink.NewAttributeDecoder(m.Data)
		if err != nil {
			return nil, err
		}
		var pid uint32
		ifidx := -1
		for ad.Next() {
			switch ad.Type() {
			case attrNapiIfidx:
				ifidx = int(ad.Uint32())
			case attrNapiThread:
				pid = ad.Uint32()
			}
		}
		if err := ad.Err(); err != nil {
			return nil, err
		}
		if ifidx == ifindex && pid != 0 {
			pids = append(pids, int(pid))
		}
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("ifindex %d has no NAPI thread (threaded NAPI off?)", ifindex)
	}
	return pids, nil
}

// pinTask pins one thread (or process) to cpus.
func pinTask(tid int, cpus ...int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	if err := unix.SchedSetaffinity(tid, &set); err != nil {
		return fmt.Errorf("pin task %d to cpus %v: %w", tid, cpus, err)
	}
	return nil
}

// pinProcess pins every thread of process pid to cpus; threads it starts
// later inherit the mask. Threads that exit meanwhile are skipped.
func pinProcess(pid int, cpus ...int) error {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list threads of %d: %w", pid, err)
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := pinTask(tid, cpus...); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
	}
	return nil
}

// processAffinity returns the CPUs the process may run on, in order.
func processAffinity() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("get cpu affinity: %w", err)
	}
	var cpus []int
	for cpu := 0; cpu < 1024 && len(cpus) < set.Count(); cpu++ {
		if set.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	return cpus, nil
}

// SCHED_FIFO priorities of the thread that does the router's work (r0's
// NAPI thread when split, else the generator's): other work on the machine
// (a build, a test run) must not take the router's CPU in the middle of a
// measurement. The kernel's RT throttling (by default 95% of each second)
// still leaves the rest of the machine some of that CPU.
const (
	routerPriority = 50
	genPriority    = 50
)

// makeRealtime gives thread tid SCHED_FIFO priority prio.
func makeRealtime(tid int, prio uint32) error {
	attr := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: prio}
	if err := unix.SchedSetAttr(tid, attr, 0); err != nil {
		return fmt.Errorf("make thread %d SCHED_FIFO %d: %w", tid, prio, err)
	}
	return nil
}

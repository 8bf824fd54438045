package datapath

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// TestSkbCtxLayout checks skbMD against the running kernel's struct
// __sk_buff, so the fields the tests set land where the kernel reads them.
func TestSkbCtxLayout(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	var skb *btf.Struct
	if err := spec.TypeByName("__sk_buff", &skb); err != nil {
		t.Fatalf("kernel BTF: %v", err)
	}
	if size := binary.Size(skbMD{}); uint32(size) != skb.Size {
		t.Errorf("skbMD is %d bytes, kernel __sk_buff %d", size, skb.Size)
	}
	kernel := make(map[string]uint32)
	for _, m := range skb.Members {
		kernel[m.Name] = m.Offset.Bytes()
	}
	// The fields the kernel lets a test run set, by their kernel names.
	settable := map[string]string{
		"Mark": "mark", "Priority": "priority", "IngressIfindex": "ingress_ifindex", "Ifindex": "ifindex",
		"CB": "cb", "Tstamp": "tstamp", "WireLen": "wire_len", "GSOSegs": "gso_segs",
		"GSOSize": "gso_size", "Hwtstamp": "hwtstamp",
	}
	// Offsets in skbMD as binary.Append lays it out: fields back to back.
	typ := reflect.TypeFor[skbMD]()
	off := 0
	for i := range typ.NumField() {
		f := typ.Field(i)
		if name := settable[f.Name]; name != "" {
			if k, ok := kernel[name]; !ok || k != uint32(off) {
				t.Errorf("%s at offset %d, kernel has %s at %d (present %v)", f.Name, off, name, k, ok)
			}
		}
		off += binary.Size(reflect.New(f.Type).Elem().Interface())
	}
}

// skbPrefix is __sk_buff up to ifindex.
type skbPrefix struct {
	Len, PktType, Mark, QueueMapping uint32
	Protocol, VlanPresent, VlanTCI   uint32
	VlanProto, Priority              uint32
	IngressIfindex, Ifindex          uint32
}

// TestRunContext pins down what the kernel's test run accepts as context,
// which the packet tests rely on.
func TestRunContext(t *testing.T) {
	tn := newTestNet(t)
	frame := tcp4(ipDst).bytes(t)
	run := func(prog *ebpf.Program, ctx any) (uint32, error) {
		var v uint32
		err := tn.do(func() error {
			var err error
			v, err = prog.Run(&ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256), Context: ctx, Repeat: 1})
			return err
		})
		return v, err
	}

	t.Run("tc prefix up to ifindex", func(t *testing.T) {
		v, err := run(tn.d.objs.FpTc, skbPrefix{Ifindex: uint32(tn.in0)})
		if err != nil || v != tcRedirect {
			t.Fatalf("got verdict %d, error %v; want TC_ACT_REDIRECT: a prefix is zero-filled", v, err)
		}
	})
	t.Run("tc vlan fields rejected", func(t *testing.T) {
		_, err := run(tn.d.objs.FpTc, skbMD{Ifindex: uint32(tn.in0), VlanPresent: 1, VlanTCI: 10})
		if !errors.Is(err, unix.EINVAL) {
			t.Fatalf("got %v, want EINVAL: the test run cannot fake an offloaded VLAN tag", err)
		}
	})
	t.Run("tc without ifindex", func(t *testing.T) {
		// No ifindex: the skb belongs to loopback, which is not managed.
		v, err := run(tn.d.objs.FpTc, nil)
		if err != nil || v != tcOK {
			t.Fatalf("got verdict %d, error %v; want TC_ACT_OK", v, err)
		}
	})
	t.Run("xdp data_end beyond the frame", func(t *testing.T) {
		_, err := run(tn.d.objs.FpXdp, xdpMD{DataEnd: uint32(len(frame) + 1), IngressIfindex: uint32(tn.in0)})
		if !errors.Is(err, unix.EINVAL) {
			t.Fatalf("got %v, want EINVAL", err)
		}
	})
	t.Run("xdp data_end inside the frame", func(t *testing.T) {
		// 6.18 takes data_end as the size of the linear part and puts the
		// rest in fragments, which the (non-frags) program cannot see:
		// the headers are incomplete, so it must pass.
		v, err := run(tn.d.objs.FpXdp, xdpMD{DataEnd: 40, IngressIfindex: uint32(tn.in0)})
		if err != nil || v != xdpPass {
			t.Fatalf("got verdict %d, error %v; want XDP_PASS", v, err)
		}
	})
	t.Run("xdp rx queue must exist", func(t *testing.T) {
		_, err := run(tn.d.objs.FpXdp, xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(tn.in0), RxQueueIndex: 1 << 16})
		if !errors.Is(err, unix.EINVAL) {
			t.Fatalf("got %v, want EINVAL", err)
		}
	})
}

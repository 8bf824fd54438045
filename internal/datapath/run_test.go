package datapath

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
)

// hook selects which of the two programs a packet test runs.
type hook int

const (
	hookXDP hook = iota
	hookTC
)

func (h hook) String() string {
	if h == hookXDP {
		return "xdp"
	}
	return "tc"
}

// Program return codes (uapi xdp_action, TC_ACT_*).
const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpTx       = 3
	xdpRedirect = 4
	tcActUnspec = ^uint32(0) // TC_ACT_UNSPEC (-1): the next program, or the stack
	tcOK        = 0
	tcShot      = 2
	tcRedirect  = 7
)

func (h hook) passCode() uint32 {
	if h == hookXDP {
		return xdpPass
	}
	return tcOK
}

func (h hook) redirectCode() uint32 {
	if h == hookXDP {
		return xdpRedirect
	}
	return tcRedirect
}

// verdictName names a program return code for failure messages.
func (h hook) verdictName(v uint32) string {
	names := map[uint32]string{xdpAborted: "XDP_ABORTED", xdpDrop: "XDP_DROP", xdpPass: "XDP_PASS", xdpTx: "XDP_TX", xdpRedirect: "XDP_REDIRECT"}
	if h == hookTC {
		names = map[uint32]string{tcOK: "TC_ACT_OK", tcShot: "TC_ACT_SHOT", tcRedirect: "TC_ACT_REDIRECT"}
	}
	if n, ok := names[v]; ok {
		return n
	}
	return fmt.Sprintf("%s verdict %d", h, v)
}

// xdpMD mirrors struct xdp_md. The kernel's test run wants data and
// data_meta 0 (no metadata) and data_end the length of the linear part:
// the whole frame here (a shorter one puts the rest in fragments, a longer
// one is EINVAL; see TestRunContext). It binds the frame to
// ingress_ifindex's rx queue, so the program and bpf_fib_lookup see that
// ingress.
type xdpMD struct {
	Data, DataEnd, DataMeta      uint32
	IngressIfindex, RxQueueIndex uint32
	EgressIfindex                uint32
}

// skbMD mirrors struct __sk_buff (192 bytes on 6.18; the pointer fields are
// 8-byte unions, written here as uint64). bpf_prog_test_run_skb accepts a
// shorter prefix too (bpf_ctx_init zero-fills the rest), but only mark,
// priority, ingress_ifindex, ifindex, cb, tstamp, wire_len, gso_segs,
// gso_size and hwtstamp may be non-zero: anything else is EINVAL. With
// ifindex set the kernel runs eth_type_trans against that device, so
// pkt_type is PACKET_HOST exactly when the dst MAC is the device's own.
// TestSkbCtxLayout checks the offsets against the kernel's BTF.
type skbMD struct {
	Len, PktType, Mark, QueueMapping uint32
	Protocol, VlanPresent, VlanTCI   uint32
	VlanProto, Priority              uint32
	IngressIfindex, Ifindex, TCIndex uint32
	CB                               [5]uint32
	Hash, TCClassid, Data, DataEnd   uint32
	NapiID, Family                   uint32
	RemoteIP4, LocalIP4              uint32
	RemoteIP6, LocalIP6              [4]uint32
	RemotePort, LocalPort, DataMeta  uint32
	FlowKeys                         uint64
	Tstamp                           uint64
	WireLen, GSOSegs                 uint32
	Sk                               uint64
	GSOSize                          uint32
	TstampType                       uint8
	_                                [3]uint8
	Hwtstamp                         uint64
}

// runOpts are per-run knobs beyond the frame itself.
type runOpts struct {
	ingress int
	gsoSize uint32 // TC only: make the skb look like a GRO aggregate
	gsoSegs uint32
	// TC only: run the skb as CHECKSUM_COMPLETE; the kernel then fails
	// the run with EBADMSG if skb->csum no longer matches the packet.
	csumComplete bool
}

// bpfFTestSkbChecksumComplete is BPF_F_TEST_SKB_CHECKSUM_COMPLETE (uapi).
const bpfFTestSkbChecksumComplete = 1 << 2

// runResult is what one BPF_PROG_RUN returned.
type runResult struct {
	verdict uint32
	out     []byte
	// priority: TC only, the skb->priority the program left (egress
	// qdiscs classify by it).
	priority uint32
}

// run feeds one frame through the program of hook, once (Repeat 1: the
// buffer is reused across repeats and in-place edits would accumulate).
// It runs inside the router netns: the ctx ifindex and the FIB are
// resolved in the calling thread's namespace.
func (tn *testNet) run(h hook, frame []byte, o runOpts) (runResult, error) {
	if o.ingress == 0 {
		o.ingress = tn.in0
	}
	in := slices.Clone(frame) // the caller's frame must stay pristine
	opts := &ebpf.RunOptions{
		Data:    in,
		DataOut: make([]byte, len(frame)+256),
		Repeat:  1,
	}
	prog := tn.d.objs.FpXdp
	var skbOut skbMD
	if h == hookXDP {
		opts.Context = xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(o.ingress)}
	} else {
		prog = tn.d.objs.FpTc
		opts.Context = skbMD{Ifindex: uint32(o.ingress), GSOSize: o.gsoSize, GSOSegs: o.gsoSegs}
		opts.ContextOut = &skbOut
		if o.csumComplete {
			opts.Flags = bpfFTestSkbChecksumComplete
		}
	}
	var res runResult
	err := tn.do(func() error {
		v, err := prog.Run(opts)
		if err != nil {
			return fmt.Errorf("run %s program on %d-byte frame: %w", h, len(frame), err)
		}
		res = runResult{verdict: v, out: opts.DataOut, priority: skbOut.Priority}
		return nil
	})
	return res, err
}

// stats reads the counters of the ingress interface; ok is false when the
// interface has no counters.
func (tn *testNet) stats(t testing.TB, ifindex int) (IfaceStats, bool) {
	t.Helper()
	all, err := tn.d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	s, ok := all[ifindex]
	return s, ok
}

// reasonIndex maps a pass reason name to its counter index.
func (tn *testNet) reasonIndex(t testing.TB, name string) int {
	t.Helper()
	i := slices.Index(tn.d.ReasonNames(), name)
	if i < 0 {
		t.Fatalf("no pass reason %q in %v", name, tn.d.ReasonNames())
	}
	return i
}

// counterDelta describes the expected change of one interface's counters.
type counterDelta struct {
	fwd    bool   // forwarded, else passed
	reason string // pass reason (when !fwd)
	bytes  int
}

// checkDelta asserts that exactly one packet was counted, the way d says.
func (tn *testNet) checkDelta(t testing.TB, before, after IfaceStats, d counterDelta) {
	t.Helper()
	want := IfaceStats{
		FwdPackets:  before.FwdPackets,
		FwdBytes:    before.FwdBytes,
		PassPackets: before.PassPackets,
		PassBytes:   before.PassBytes,
		PassReason:  slices.Clone(before.PassReason),
	}
	if d.fwd {
		want.FwdPackets++
		want.FwdBytes += uint64(d.bytes)
	} else {
		want.PassPackets++
		want.PassBytes += uint64(d.bytes)
		want.PassReason[tn.reasonIndex(t, d.reason)]++
	}
	if want.FwdPackets != after.FwdPackets || want.FwdBytes != after.FwdBytes ||
		want.PassPackets != after.PassPackets || want.PassBytes != after.PassBytes {
		t.Errorf("counters: got fwd %d/%dB pass %d/%dB, want fwd %d/%dB pass %d/%dB",
			after.FwdPackets, after.FwdBytes, after.PassPackets, after.PassBytes,
			want.FwdPackets, want.FwdBytes, want.PassPackets, want.PassBytes)
	}
	names := tn.d.ReasonNames()
	for i := range want.PassReason {
		if want.PassReason[i] != after.PassReason[i] {
			t.Errorf("pass reason %s: got %d, want %d", names[i], after.PassReason[i], want.PassReason[i])
		}
	}
}

// diffBytes describes where two frames differ, for failure messages.
func diffBytes(got, want []byte) string {
	if len(got) != len(want) {
		return fmt.Sprintf("length %d, want %d\n got  %x\n want %x", len(got), len(want), got, want)
	}
	var b bytes.Buffer
	for i := range got {
		if got[i] != want[i] {
			fmt.Fprintf(&b, " [%d]=%#02x want %#02x", i, got[i], want[i])
		}
	}
	return "differs at" + b.String()
}

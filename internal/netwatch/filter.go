package netwatch

import (
	"golang.org/x/net/bpf"
)

// maxRouteAttrs bounds the attributes the filter walks in one route
// message; the kernel puts about ten in one (IPv6 with cache info).
const maxRouteAttrs = 24

// mtuFilter is a classic BPF socket filter for rtnetlink route messages:
// it lets through messages with an RTA_METRICS attribute (the MTU is one
// of the metrics) and replaces (NLM_F_REPLACE: a replace without metrics
// may remove an MTU); the rest, a full table's worth of plain routes, is
// dropped in the kernel before it is queued to the socket.
//
// A replace of a route that uses a nexthop object (RTA_NH_ID) and has no
// metrics is dropped too: the kernel sends one for every route using a
// nexthop group when the group changes (net.ipv4.nexthop_compat_mode 1,
// the default), a million of them for a BGP table behind one next hop.
// The price: such a replace that removes an MTU leaves the old MTU
// mirrored until the next resync, which only makes the datapath pass that
// prefix's larger packets to the kernel.
//
// Netlink is host byte order (little endian here) while classic BPF loads
// words big endian, so the filter reads single bytes. A load past the end
// drops the message.
func mtuFilter() ([]bpf.RawInstruction, error) {
	const (
		accept  = 0xffffffff
		flagsHi = 7  // nlmsg_flags (u16 at 6), high byte
		replace = 1  // NLM_F_REPLACE (0x100) in that byte
		attrs   = 28 // nlmsghdr (16) + rtmsg (12)
		metrics = 8  // RTA_METRICS
		nhID    = 30 // RTA_NH_ID

		off     = 0 // scratch: offset of the current attribute
		lenLo   = 1 // scratch: low byte of its length
		verdict = 2 // scratch: the answer if no RTA_METRICS comes
	)
	p := []bpf.Instruction{
		bpf.LoadAbsolute{Off: flagsHi, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: replace, SkipFalse: 2},
		bpf.LoadConstant{Dst: bpf.RegA, Val: accept},
		bpf.Jump{Skip: 1},
		bpf.LoadConstant{Dst: bpf.RegA, Val: 0},
		bpf.StoreScratch{Src: bpf.RegA, N: verdict},
		bpf.LoadConstant{Dst: bpf.RegA, Val: attrs},
		bpf.StoreScratch{Src: bpf.RegA, N: off},
	}
	for range maxRouteAttrs {
		p = append(p,
			// At the end of the message: the verdict.
			bpf.LoadScratch{Dst: bpf.RegX, N: off},
			bpf.LoadExtension{Num: bpf.ExtLen},
			bpf.JumpIfX{Cond: bpf.JumpGreaterThan, SkipTrue: 2},
			bpf.LoadScratch{Dst: bpf.RegA, N: verdict},
			bpf.RetA{},
			// RTA_METRICS (without the NLA_F_* flags): accept.
			bpf.LoadIndirect{Off: 2, Size: 1}, // rta_type, low byte
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: metrics, SkipFalse: 4},
			bpf.LoadIndirect{Off: 3, Size: 1},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x3f},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipFalse: 1},
			bpf.RetConstant{Val: accept},
			// RTA_NH_ID: a replace without metrics is not for us.
			bpf.LoadIndirect{Off: 2, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: nhID, SkipFalse: 2},
			bpf.LoadConstant{Dst: bpf.RegA, Val: 0},
			bpf.StoreScratch{Src: bpf.RegA, N: verdict},
			// The next attribute: rta_len = lo | hi<<8, aligned to 4.
			bpf.LoadIndirect{Off: 0, Size: 1},
			bpf.StoreScratch{Src: bpf.RegA, N: lenLo},
			bpf.LoadIndirect{Off: 1, Size: 1},
			bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 8},
			bpf.LoadScratch{Dst: bpf.RegX, N: lenLo},
			bpf.ALUOpX{Op: bpf.ALUOpOr},
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: rtattrHdr, SkipTrue: 1},
			bpf.RetConstant{Val: 0}, // malformed
			bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 3},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xfffc},
			bpf.LoadScratch{Dst: bpf.RegX, N: off},
			bpf.ALUOpX{Op: bpf.ALUOpAdd},
			bpf.StoreScratch{Src: bpf.RegA, N: off},
		)
	}
	// More attributes than walked: let the daemon decide.
	p = append(p, bpf.RetConstant{Val: accept})
	return bpf.Assemble(p)
}

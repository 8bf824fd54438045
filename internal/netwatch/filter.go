package netwatch

import (
	"golang.org/x/net/bpf"
)

// maxRouteAttrs bounds the attributes the filter walks in one route
// message; the kernel puts about ten in one (IPv6 with cache info).
const maxRouteAttrs = 24

// mtuFilter is a classic BPF socket filter for rtnetlink route messages:
// it lets through only a replace (NLM_F_REPLACE, which may remove an MTU)
// and messages with an RTA_METRICS attribute (the MTU is one of the
// metrics); the rest, a full table's worth of plain routes, is dropped in
// the kernel before it is queued to the socket. Netlink is host byte order
// (little endian here) while classic BPF loads words big endian, so the
// filter reads single bytes. A load past the end drops the message.
func mtuFilter() ([]bpf.RawInstruction, error) {
	const (
		accept  = 0xffffffff
		flagsHi = 7  // nlmsg_flags (u16 at 6), high byte
		replace = 1  // NLM_F_REPLACE (0x100) in that byte
		attrs   = 28 // nlmsghdr (16) + rtmsg (12)
		off     = 0  // scratch: offset of the current attribute
		lenLo   = 1  // scratch: low byte of its length
		metrics = 8  // RTA_METRICS
	)
	p := []bpf.Instruction{
		bpf.LoadAbsolute{Off: flagsHi, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: replace, SkipFalse: 1},
		bpf.RetConstant{Val: accept},
		bpf.LoadConstant{Dst: bpf.RegA, Val: attrs},
		bpf.StoreScratch{Src: bpf.RegA, N: off},
	}
	for range maxRouteAttrs {
		p = append(p,
			bpf.LoadScratch{Dst: bpf.RegX, N: off},
			bpf.LoadIndirect{Off: 2, Size: 1}, // rta_type, low byte
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: metrics, SkipFalse: 4},
			bpf.LoadIndirect{Off: 3, Size: 1}, // high byte, without the NLA_F_* flags
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x3f},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipFalse: 1},
			bpf.RetConstant{Val: accept},
			bpf.LoadIndirect{Off: 0, Size: 1}, // rta_len = lo | hi<<8
			bpf.StoreScratch{Src: bpf.RegA, N: lenLo},
			bpf.LoadIndirect{Off: 1, Size: 1},
			bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 8},
			bpf.LoadScratch{Dst: bpf.RegX, N: lenLo},
			bpf.ALUOpX{Op: bpf.ALUOpOr},
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: rtattrHdr, SkipTrue: 1},
			bpf.RetConstant{Val: 0},                     // malformed
			bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 3}, // RTA_ALIGN
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xfffc},
			bpf.LoadScratch{Dst: bpf.RegX, N: off},
			bpf.ALUOpX{Op: bpf.ALUOpAdd},
			bpf.StoreScratch{Src: bpf.RegA, N: off},
		)
	}
	p = append(p, bpf.RetConstant{Val: 0})
	return bpf.Assemble(p)
}

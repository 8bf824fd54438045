// Package replay runs a BPF program many times on one frame with
// BPF_PROG_RUN, for per-packet micro-benchmarks of programs that edit the
// frame.
//
// BPF_PROG_RUN with Repeat > 1 reuses one buffer, so a forwarding program
// would see its own output (new MACs, TTL one less, NAT applied) on the
// next repeat and stop forwarding it. A replay wrapper restores the frame's
// first HeaderLen bytes from a template before every run, optionally
// writes a varying 32-bit field (so consecutive runs are different flows or
// destinations), then tail-calls the program under test. Baseline swaps
// the target for an empty program: the wrapper's own cost, to subtract.
package replay

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// HeaderLen is how many bytes of the frame are restored before each run
// (Ethernet + IPv6 + TCP fit); frames must be at least this long.
const HeaderLen = 80

// Vary describes the field that changes from run to run: run k writes
// Base + k%N, big-endian, at byte Offset of the frame. N 0 varies nothing.
type Vary struct {
	Offset int
	Base   uint32
	N      uint32
}

type objects struct {
	XDP    *ebpf.Program `ebpf:"replay_xdp"`
	TC     *ebpf.Program `ebpf:"replay_tc"`
	NopXDP *ebpf.Program `ebpf:"replay_nop_xdp"`
	NopTC  *ebpf.Program `ebpf:"replay_nop_tc"`
	Conf   *ebpf.Map     `ebpf:"replay_conf"`
	Seq    *ebpf.Map     `ebpf:"replay_seq"`
	XDPJmp *ebpf.Map     `ebpf:"replay_xdp_jmp"`
	TCJmp  *ebpf.Map     `ebpf:"replay_tc_jmp"`
}

// Replayer wraps one XDP or TC program.
type Replayer struct {
	objs   objects
	target *ebpf.Program
	xdp    bool
}

// New loads a replay wrapper for target, an XDP or a SchedCLS (TC) program.
func New(target *ebpf.Program) (*Replayer, error) {
	r := &Replayer{target: target}
	switch target.Type() {
	case ebpf.XDP:
		r.xdp = true
	case ebpf.SchedCLS:
	default:
		return nil, fmt.Errorf("replay: cannot wrap a %s program", target.Type())
	}
	spec, err := loadReplay()
	if err != nil {
		return nil, fmt.Errorf("replay: parse bpf object: %w", err)
	}
	if err := spec.LoadAndAssign(&r.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("replay: load: %+v", verr)
		}
		return nil, fmt.Errorf("replay: load: %w", err)
	}
	if err := r.Target(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Close releases the wrapper (not the target).
func (r *Replayer) Close() error {
	for _, c := range []interface{ Close() error }{r.objs.XDP, r.objs.TC, r.objs.NopXDP, r.objs.NopTC,
		r.objs.Conf, r.objs.Seq, r.objs.XDPJmp, r.objs.TCJmp} {
		c.Close()
	}
	return nil
}

// Program is the wrapper to run with BPF_PROG_RUN, with the context the
// target expects.
func (r *Replayer) Program() *ebpf.Program {
	if r.xdp {
		return r.objs.XDP
	}
	return r.objs.TC
}

// Nop is an empty program of the wrapped program's type: run directly, it
// measures what BPF_PROG_RUN itself costs per repeat.
func (r *Replayer) Nop() *ebpf.Program {
	if r.xdp {
		return r.objs.NopXDP
	}
	return r.objs.NopTC
}

// Target makes the wrapper call the program under test.
func (r *Replayer) Target() error { return r.jump(r.target) }

// Baseline makes the wrapper call an empty program instead: runs then cost
// the wrapper alone.
func (r *Replayer) Baseline() error {
	if r.xdp {
		return r.jump(r.objs.NopXDP)
	}
	return r.jump(r.objs.NopTC)
}

func (r *Replayer) jump(p *ebpf.Program) error {
	m := r.objs.TCJmp
	if r.xdp {
		m = r.objs.XDPJmp
	}
	if err := m.Update(uint32(0), p, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("replay: set tail call target: %w", err)
	}
	return nil
}

// SetFrame makes frame's first HeaderLen bytes the template restored before
// each run, and v the varying field. The run counter starts again at 0.
func (r *Replayer) SetFrame(frame []byte, v Vary) error {
	if len(frame) < HeaderLen {
		return fmt.Errorf("replay: frame of %d bytes, need at least %d", len(frame), HeaderLen)
	}
	if v.N > 0 && (v.Offset < 0 || v.Offset > HeaderLen-4) {
		return fmt.Errorf("replay: varying field at %d outside the first %d bytes", v.Offset, HeaderLen)
	}
	cfg := replayReplayCfg{VaryOff: uint32(v.Offset), VaryBase: v.Base, VaryN: v.N}
	copy(cfg.Hdr[:], frame)
	if err := r.objs.Conf.Update(uint32(0), cfg, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("replay: configure: %w", err)
	}
	zero := make([]uint64, ebpf.MustPossibleCPU())
	if err := r.objs.Seq.Update(uint32(0), zero, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("replay: reset counter: %w", err)
	}
	return nil
}

package datapath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// EventType says what happened to a flow.
type EventType uint32

const (
	// FlowAdded: the flow entered the cache; fastpath forwards it now.
	FlowAdded = EventType(fastpathFpEventTypeFP_EV_FLOW_ADD)
	// FlowRemoved: the flow left the cache (Reason says why): a FIN or RST
	// (both directions), conntrack's entry gone, idle.
	FlowRemoved = EventType(fastpathFpEventTypeFP_EV_FLOW_DEL)
	// FlowPending: a TCP flow waits for its conntrack entry to be made
	// window-liberal (ctliberal) before the datapath offloads it.
	FlowPending = EventType(fastpathFpEventTypeFP_EV_FLOW_PENDING)
	// GuardDrop: the guard dropped a packet (sampled, at most one per CPU
	// per guard event interval); Reason is the guard's drop reason and
	// Flow.In the packet's addresses and ports.
	GuardDrop = EventType(fastpathFpEventTypeFP_EV_GUARD_DROP)
)

func (t EventType) String() string {
	switch t {
	case FlowAdded:
		return "flow_added"
	case FlowRemoved:
		return "flow_removed"
	case FlowPending:
		return "flow_pending"
	case GuardDrop:
		return "guard_drop"
	}
	return fmt.Sprintf("event_%d", uint32(t))
}

// The reasons of FlowRemoved events that are no pass reason (enum
// fp_del_reason); every other is the pass reason its next packet gets.
const (
	RemovedIdle      = "idle"              // no packet for the idle timeout (ExpireIdle)
	RemovedCTChanged = "conntrack_changed" // another program changed the conntrack entry (ForgetConnection)
)

var delReasons = map[uint32]string{
	uint32(fastpathFpDelReasonFP_DEL_IDLE):       RemovedIdle,
	uint32(fastpathFpDelReasonFP_DEL_CT_CHANGED): RemovedCTChanged,
}

// Event is one flow event from the datapath.
type Event struct {
	Type   EventType
	Time   time.Duration // CLOCK_MONOTONIC
	Reason string        // pass reason name, for FlowRemoved
	// Flow: the flow as the event left, its packets, bytes and Created
	// included (what an evicted flow carried); Last is not filled.
	Flow Flow
}

// EventReader reads flow events. Close unblocks Read.
type EventReader struct {
	rd           *ringbuf.Reader
	reasons      []string
	guardReasons []string
}

// Events opens the datapath's event ring buffer.
func (d *Datapath) Events() (*EventReader, error) {
	rd, err := ringbuf.NewReader(d.objs.FpEvents)
	if err != nil {
		return nil, fmt.Errorf("open event ring buffer: %w", err)
	}
	return &EventReader{rd: rd, reasons: d.reasons, guardReasons: d.guardReasons}, nil
}

// ErrClosed is returned by Read after Close.
var ErrClosed = os.ErrClosed

// Read blocks until the next event.
func (r *EventReader) Read() (Event, error) {
	rec, err := r.rd.Read()
	if err != nil {
		if errors.Is(err, ringbuf.ErrClosed) {
			return Event{}, ErrClosed
		}
		return Event{}, fmt.Errorf("read event: %w", err)
	}
	var e fastpathFpEvent
	if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &e); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	v := fastpathFpFlow{
		IfindexIn: e.IfindexIn, IfindexOut: e.IfindexOut, Flags: e.Flags,
		NatSaddr: e.NatSaddr, NatDaddr: e.NatDaddr, NatSport: e.NatSport, NatDport: e.NatDport,
		Packets: e.Packets, Bytes: e.Bytes, CreatedNs: e.CreatedNs,
	}
	ev := Event{Type: EventType(e.Type), Time: time.Duration(e.TsNs), Flow: flowOf(e.Key, v, 0, 0)}
	ev.Flow.Stale = false
	if ev.Type == FlowRemoved {
		if name, ok := delReasons[e.Reason]; ok {
			ev.Reason = name
		} else if int(e.Reason) < len(r.reasons) {
			ev.Reason = r.reasons[e.Reason]
		}
	}
	if ev.Type == GuardDrop && int(e.Reason) < len(r.guardReasons) {
		ev.Reason = r.guardReasons[e.Reason]
	}
	return ev, nil
}

// Close stops reading.
func (r *EventReader) Close() error { return r.rd.Close() }

package ic

import (
	"encoding/binary"
	"time"

	"github.com/vmmdev/vmm/devices/vmbus"
)

// Heartbeat IC class (hyperv.h HV_HEART_BEAT_GUID) and the instance vmm
// offers it under.
var (
	HeartbeatClass    = vmbus.MustGUID("57164f39-9115-4e78-ab55-382f3bd5422d")
	heartbeatInstance = vmbus.MustGUID("57164f39-9115-4e78-ab55-382f3bd5422d")
)

// heartbeatBody is {u64 seq_num, u32 reserved[8]}.
const heartbeatBody = 40

// Heartbeat is the heartbeat service: on each Beat the host sends a
// sequence number, and a live guest answers it plus one.
type Heartbeat struct {
	*framework
	now func() time.Time

	seq      uint64 // last sequence number sent
	beats    uint64
	lastBeat time.Time
}

// HeartbeatStatus is the heartbeat service's state for the report.
type HeartbeatStatus struct {
	Status
	// Beats counts the guest's correct answers; LastBeat is when the
	// last one arrived (zero: none).
	Beats    uint64    `json:"beats"`
	LastBeat time.Time `json:"last_beat"`
}

// NewHeartbeat returns the heartbeat device. now is the clock (nil:
// time.Now).
func NewHeartbeat(now func() time.Time) *Heartbeat {
	if now == nil {
		now = time.Now
	}
	h := &Heartbeat{now: now}
	h.framework = newFramework(service{
		name:     "heartbeat",
		offer:    vmbus.Offer{Class: HeartbeatClass, Instance: heartbeatInstance},
		msgType:  TypeHeartbeat,
		versions: []uint32{Version(3, 0), Version(1, 0)},
		answer:   h.answer,
	})
	return h
}

// Beat asks the guest for a heartbeat. ErrBusy: the last one is still
// unanswered; ErrNotReady: no channel or versions yet.
func (h *Heartbeat) Beat() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	body := make([]byte, heartbeatBody)
	binary.LittleEndian.PutUint64(body, h.seq+1)
	if err := h.requestLocked(body); err != nil {
		return err
	}
	h.seq++
	return nil
}

func (h *Heartbeat) answer(status uint32, body []byte) {
	if status != StatusOK || len(body) < 8 || binary.LittleEndian.Uint64(body) != h.seq+1 {
		h.ignored++
		return
	}
	h.beats++
	h.lastBeat = h.now()
}

// Status reports the service's state.
func (h *Heartbeat) Status() HeartbeatStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return HeartbeatStatus{Status: h.statusLocked(), Beats: h.beats, LastBeat: h.lastBeat}
}

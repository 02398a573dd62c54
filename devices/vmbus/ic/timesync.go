package ic

import (
	"encoding/binary"
	"time"

	"github.com/vmmdev/vmm/devices/vmbus"
)

// Time synchronization IC class (hyperv.h HV_TS_GUID) and vmm's instance.
var (
	TimeSyncClass    = vmbus.MustGUID("9527e630-d0ae-497b-adce-e80ab0175caf")
	timeSyncInstance = vmbus.MustGUID("9527e630-d0ae-497b-adce-e80ab0175caf")
)

// TimeSync flags (hyperv.h ICTIMESYNCFLAG_*): SYNC steps the guest clock,
// SAMPLE only feeds its PTP clock.
const (
	TimeSyncFlagSync   = 1
	TimeSyncFlagSample = 2
)

// epoch1601 is the Unix epoch in 100 ns units since 1601-01-01, the
// Windows time base the protocol uses (hv_util.c WLTIMEDELTA).
const epoch1601 = 116444736000000000

// Message bodies: v4 ictimesync_ref_data {u64 parenttime, u64
// vmreferencetime, u8 flags, i8 leapflags, i8 stratum, u8 reserved[3]};
// v1/v3 ictimesync_data {u64 parenttime, u64 childtime, u64
// roundtriptime, u8 flags}.
const (
	timeSyncRefBody = 22
	timeSyncBody    = 25
)

// TimeSync is the time synchronization service: once the versions are
// agreed on an open channel, the host sends its UTC time with SYNC, and
// Linux steps the guest clock to it.
type TimeSync struct {
	*framework
	now     func() time.Time
	refTime func() uint64

	sent, answered uint64
}

// TimeSyncStatus is the service's state for the report.
type TimeSyncStatus struct {
	Status
	// Sent counts SYNC messages; Answered the guest's answers.
	Sent     uint64 `json:"sent"`
	Answered uint64 `json:"answered"`
}

// NewTimeSync returns the time sync device. now is the host's clock (nil:
// time.Now); refTime is the partition's reference time (TIME_REF_COUNT,
// 100 ns units), which a v4 message pairs with the host time.
func NewTimeSync(now func() time.Time, refTime func() uint64) *TimeSync {
	if now == nil {
		now = time.Now
	}
	t := &TimeSync{now: now, refTime: refTime}
	t.framework = newFramework(service{
		name:     "timesync",
		offer:    vmbus.Offer{Class: TimeSyncClass, Instance: timeSyncInstance},
		msgType:  TypeTimeSync,
		versions: []uint32{Version(4, 0), Version(3, 0), Version(1, 0)},
		answer:   func(uint32, []byte) { t.answered++ },
		ready:    t.syncLocked,
	})
	return t
}

// Sync sends the host time with SYNC again (the first goes out by itself
// when the channel is ready).
func (t *TimeSync) Sync() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != StateReady {
		return ErrNotReady
	}
	t.syncLocked()
	return nil
}

func (t *TimeSync) syncLocked() {
	le := binary.LittleEndian
	parent := uint64(t.now().UnixNano()/100) + epoch1601
	var body []byte
	if t.ver >= Version(4, 0) {
		body = make([]byte, timeSyncRefBody)
		le.PutUint64(body[0:], parent)
		le.PutUint64(body[8:], t.refTime())
		body[16] = TimeSyncFlagSync
	} else {
		body = make([]byte, timeSyncBody)
		le.PutUint64(body[0:], parent)
		body[24] = TimeSyncFlagSync
	}
	if t.requestLocked(body) == nil {
		t.sent++
	}
}

// Status reports the service's state.
func (t *TimeSync) Status() TimeSyncStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	return TimeSyncStatus{Status: t.statusLocked(), Sent: t.sent, Answered: t.answered}
}

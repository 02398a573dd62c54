package hyperv

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func timerConfig(t *testing.T, enable, periodic, autoEnable, direct bool, vector uint8, sint int) uint64 {
	t.Helper()
	var c uint64
	if enable {
		c |= stimerEnable
	}
	if periodic {
		c |= stimerPeriodic
	}
	if autoEnable {
		c |= stimerAutoEnable
	}
	if direct {
		c |= stimerDirect
	}
	return c | uint64(vector)<<stimerVectorShft | uint64(sint)<<stimerSintShift
}

func TestSTimerDirectOneShot(t *testing.T) {
	tp := newTestPartition(t, "all", 2)
	cfg := timerConfig(t, true, false, true, true, 0xed, 0)
	tp.mustWrite(t, 1, MSRSTimer0Config, cfg)
	require.Zero(t, tp.clock.armed(), "no count yet")
	tp.mustWrite(t, 1, MSRSTimer0Config+1, 5000) // absolute reference time
	require.Equal(t, 1, tp.clock.armed())
	tp.clock.Advance(4999)
	require.Empty(t, tp.host.takeIRQs())
	tp.clock.Advance(1)
	require.Equal(t, []irq{{1, 0xed}}, tp.host.takeIRQs())
	require.Zero(t, tp.mustRead(t, 1, MSRSTimer0Config)&stimerEnable, "one-shot disables after delivery")
	tp.clock.Advance(100000)
	require.Empty(t, tp.host.takeIRQs())

	// Re-arming through COUNT with auto-enable, in the past: fires at once.
	tp.mustWrite(t, 1, MSRSTimer0Config+1, 3)
	require.Equal(t, []irq{{1, 0xed}}, tp.host.takeIRQs())

	// COUNT 0 disables.
	tp.mustWrite(t, 1, MSRSTimer0Config+1, tp.clock.Now()+100)
	tp.mustWrite(t, 1, MSRSTimer0Config+1, 0)
	require.Zero(t, tp.mustRead(t, 1, MSRSTimer0Config)&stimerEnable)
	tp.clock.Advance(1000)
	require.Empty(t, tp.host.takeIRQs())

	s := tp.Summary().VPs[1].Timers
	require.Equal(t, []TimerSummary{{Timer: 0, Mode: "direct", Vector: 0xed, Expired: 2, Delivered: 2}}, s)
}

func TestSTimerPeriodicKeepsPhase(t *testing.T) {
	tp := newTestPartition(t, "all", 1)
	tp.mustWrite(t, 0, MSRSTimer0Config+2+1, 10000) // timer 1 count: 1 ms period
	tp.mustWrite(t, 0, MSRSTimer0Config+2, timerConfig(t, true, true, false, true, 0x40, 0))
	tp.clock.Advance(35000)
	require.Equal(t, []irq{{0, 0x40}, {0, 0x40}, {0, 0x40}}, tp.host.takeIRQs())
	tp.clock.Advance(5000)
	require.Len(t, tp.host.takeIRQs(), 1, "the 4th period ends at 40000")
	// Stopping via config.
	tp.mustWrite(t, 0, MSRSTimer0Config+2, 0)
	tp.clock.Advance(50000)
	require.Empty(t, tp.host.takeIRQs())
	require.Zero(t, tp.clock.armed())
}

func TestSTimerPeriodicMinimumPeriod(t *testing.T) {
	tp := newTestPartition(t, "all", 1)
	tp.mustWrite(t, 0, MSRSTimer0Config+1, 1) // 100 ns asked
	tp.mustWrite(t, 0, MSRSTimer0Config, timerConfig(t, true, true, false, true, 0x40, 0))
	tp.clock.Advance(minPeriod * 3)
	require.Len(t, tp.host.takeIRQs(), 3)
}

func TestSTimerConfigRules(t *testing.T) {
	tp := newTestPartition(t, "vpindex,synic,time,stimer", 1)
	require.False(t, tp.WriteMSR(0, MSRSTimer0Config, timerConfig(t, true, false, false, true, 0x40, 0)),
		"direct mode without stimer-direct")
	require.False(t, tp.WriteMSR(0, MSRSTimer0Config, 1<<40), "reserved bit")
	// Message mode with SINT 0: enable is dropped.
	tp.mustWrite(t, 0, MSRSTimer0Config, timerConfig(t, true, false, false, false, 0, 0))
	require.Zero(t, tp.mustRead(t, 0, MSRSTimer0Config)&stimerEnable)
	_, ok := tp.ReadMSR(0, MSRSTimer3Count)
	require.True(t, ok)
}

func slot(tp testPart, simp uint64, sint int) []byte {
	off := simp + uint64(sint)*msgSlotSize
	return tp.mem.b[off : off+msgSlotSize]
}

func TestSTimerMessageModeAndEOM(t *testing.T) {
	tp := newTestPartition(t, "all", 1)
	const simp = 0x10000
	tp.mustWrite(t, 0, MSRSControl, 1)
	tp.mustWrite(t, 0, MSRSIMP, simp|1)
	tp.mustWrite(t, 0, MSRSINT0+3, 0x50)
	tp.mustWrite(t, 0, MSRSTimer0Config+1, 2000)
	tp.mustWrite(t, 0, MSRSTimer0Config, timerConfig(t, true, true, false, false, 0, 3))
	tp.clock.Advance(2000)
	require.Equal(t, []irq{{0, 0x50}}, tp.host.takeIRQs())
	le := binary.LittleEndian
	s := slot(tp, simp, 3)
	require.Equal(t, uint32(msgTimerExpired), le.Uint32(s[0:]))
	require.Equal(t, byte(timerPayloadLen), s[4])
	require.Zero(t, s[5], "no message pending")
	require.Equal(t, uint32(0), le.Uint32(s[16:]), "timer index")
	require.Equal(t, uint64(2000), le.Uint64(s[24:]), "expiration time")
	require.Equal(t, uint64(2000), le.Uint64(s[32:]), "delivery time")

	// The guest has not consumed the slot: the next expiry marks it
	// message-pending and waits; the periodic timer does not rearm.
	tp.clock.Advance(2000)
	require.Empty(t, tp.host.takeIRQs())
	require.Equal(t, byte(1), s[5]&1, "msg_pending set")
	require.Zero(t, tp.clock.armed())
	tp.clock.Advance(10000)
	require.Empty(t, tp.host.takeIRQs())

	// The guest consumes the message and, seeing msg_pending, writes EOM.
	le.PutUint32(s[0:], 0)
	tp.clock.Advance(500)
	tp.mustWrite(t, 0, MSREOM, 0)
	require.Equal(t, []irq{{0, 0x50}}, tp.host.takeIRQs())
	require.Equal(t, uint64(4000), le.Uint64(s[24:]), "the pending expiry")
	require.Equal(t, uint64(14500), le.Uint64(s[32:]), "delivered at EOM time")
	require.Zero(t, s[5], "flags rewritten")
	require.Equal(t, 1, tp.clock.armed(), "periodic rearmed after delivery")
	le.PutUint32(s[0:], 0)
	tp.clock.Advance(1500) // next period on the 2000 grid: 16000
	require.Equal(t, []irq{{0, 0x50}}, tp.host.takeIRQs())
	require.Equal(t, uint64(16000), le.Uint64(s[24:]))

	ts := tp.Summary().VPs[0].Timers[0]
	require.Equal(t, TimerSummary{Timer: 0, Mode: "message", Periodic: true, SINT: 3, Expired: 3, Delivered: 3}, ts)
}

func TestSTimerMessageWaitsForSynIC(t *testing.T) {
	tp := newTestPartition(t, "all", 1)
	const simp = 0x20000
	tp.mustWrite(t, 0, MSRSTimer0Config+1, 100) // one-shot at 100
	tp.mustWrite(t, 0, MSRSTimer0Config, timerConfig(t, true, false, false, false, 0, 2))
	tp.clock.Advance(200)
	require.Empty(t, tp.host.takeIRQs(), "SynIC off")
	tp.mustWrite(t, 0, MSRSControl, 1)
	tp.mustWrite(t, 0, MSRSIMP, simp|1)
	require.Empty(t, tp.host.takeIRQs(), "SINT2 masked")
	tp.mustWrite(t, 0, MSRSINT0+2, 0x60)
	require.Equal(t, []irq{{0, 0x60}}, tp.host.takeIRQs(), "delivered once the SINT is unmasked")
	require.Zero(t, tp.mustRead(t, 0, MSRSTimer0Config)&stimerEnable)
}

func TestPostMessageRaceWithGuestConsumer(t *testing.T) {
	tp := newTestPartition(t, "all", 1)
	const simp = 0x30000
	tp.mustWrite(t, 0, MSRSControl, 1)
	tp.mustWrite(t, 0, MSRSIMP, simp|1)
	tp.mustWrite(t, 0, MSRSINT0+1, 0x70)
	v := tp.vps[0]
	v.mu.Lock()
	defer v.mu.Unlock()
	require.True(t, tp.postMessage(v, 1, 0x100, []byte{1, 2, 3}))
	require.False(t, tp.postMessage(v, 1, 0x101, []byte{4}), "slot full")
	s := slot(tp, simp, 1)
	require.Equal(t, byte(1), s[5]&1)
	require.Equal(t, []byte{1, 2, 3}, s[16:19])
	require.False(t, tp.postMessage(v, 1, 0x100, make([]byte, msgPayloadMax+1)), "payload too large")
	binary.LittleEndian.PutUint32(s, 0)
	require.True(t, tp.postMessage(v, 1, 0x101, []byte{4}))
	require.Equal(t, uint32(0x101), binary.LittleEndian.Uint32(s))
	require.Equal(t, byte(1), s[4])
}

// allocClock is a real-time-free Clock whose AfterFunc allocates nothing,
// so what a test counts is the partition's own allocations.
type allocClock struct{ now uint64 }

type allocTimer struct{}

func (allocTimer) Stop() bool                                      { return true }
func (c *allocClock) Now() uint64                                  { return c.now }
func (c *allocClock) AfterFunc(uint64, func(uint64), uint64) Timer { return allocTimer{} }

// A guest re-arms its timer at every tick, on every vCPU: the partition
// must not allocate for it (garbage to collect while the guest runs is
// vmm's own memory, issue 20).
func TestSTimerRearmAllocatesNothing(t *testing.T) {
	tp := newTestPartition(t, "all", 1)
	tp.Partition.clock = &allocClock{now: 1000}
	tp.mustWrite(t, 0, MSRSTimer0Config, timerConfig(t, true, false, false, true, 0x40, 0))
	count := uint64(2000)
	ok := true
	allocs := testing.AllocsPerRun(200, func() {
		count += 1000
		ok = ok && tp.WriteMSR(0, MSRSTimer0Config+1, count)
	})
	require.True(t, ok)
	require.Zero(t, allocs, "allocations per STIMER0_COUNT write")
	require.Equal(t, count, tp.mustRead(t, 0, MSRSTimer0Config+1))
}

func TestMSRNames(t *testing.T) {
	for i := range uint32(16) {
		require.Equal(t, fmt.Sprintf("SINT%d", i), msrName(MSRSINT0+i))
	}
	for i := range uint32(4) {
		require.Equal(t, fmt.Sprintf("STIMER%d_CONFIG", i), msrName(MSRSTimer0Config+2*i))
		require.Equal(t, fmt.Sprintf("STIMER%d_COUNT", i), msrName(MSRSTimer0Config+2*i+1))
	}
	for i := range uint32(5) {
		require.Equal(t, fmt.Sprintf("CRASH_P%d", i), msrName(MSRCrashP0+i))
	}
	require.Equal(t, "0x400000ff", msrName(0x400000ff))
}

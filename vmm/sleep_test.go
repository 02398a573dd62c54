package vmm

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/bus"
	"github.com/vmmdev/vmm/devices/cmos"
	"github.com/vmmdev/vmm/devices/piix"
	"github.com/vmmdev/vmm/layout"
	"github.com/vmmdev/vmm/vmm/kvm"
)

type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// parkAsync parks one vCPU on s and reports on the channel when released.
func parkAsync(s *sleeper, stop <-chan struct{}) <-chan bool {
	done := make(chan bool, 1)
	go func() { done <- s.park(stop) }()
	return done
}

func released(t *testing.T, ch <-chan bool) bool {
	t.Helper()
	select {
	case ok := <-ch:
		return ok
	case <-time.After(5 * time.Second):
		t.Fatal("vCPU still parked")
		return false
	}
}

func stillParked(t *testing.T, ch <-chan bool) {
	t.Helper()
	select {
	case <-ch:
		t.Fatal("vCPU released early")
	case <-time.After(20 * time.Millisecond):
	}
}

// TestSleeperWaitsForEveryVCPU: a wake before the last vCPU parked holds
// the others until it has; WAK_STS (onWake) is set before any runs; the
// figures count one cycle and its time asleep.
func TestSleeperWaitsForEveryVCPU(t *testing.T) {
	clk := &stepClock{t: time.Unix(1000, 0)}
	s := newSleeper(2, clk.now)
	stop := make(chan struct{})
	assert.False(t, s.wake("rtc alarm", nil), "wake while awake")
	require.True(t, s.suspend())
	assert.False(t, s.suspend(), "second SLP_EN while asleep")
	assert.Equal(t, uint64(1), s.gen.Load())
	first := parkAsync(s, stop)
	clk.advance(3 * time.Second)
	woke := 0
	require.True(t, s.wake("rtc alarm", func() { woke++ }))
	assert.False(t, s.wake("host", nil), "a second wake event")
	stillParked(t, first)
	assert.Equal(t, 0, woke, "WAK_STS before every vCPU parked")
	second := parkAsync(s, stop)
	assert.True(t, released(t, first))
	assert.True(t, released(t, second))
	assert.Equal(t, 1, woke)
	assert.False(t, s.sleeping())
	assert.Equal(t, SleepStats{Suspends: 1, Resumes: 1, Asleep: 3 * time.Second, LastWake: "rtc alarm"}, s.snapshot())

	// A VM stopped while asleep releases its vCPUs with false.
	require.True(t, s.suspend())
	assert.Equal(t, uint64(2), s.gen.Load())
	p := parkAsync(s, stop)
	clk.advance(time.Second)
	assert.Equal(t, 4*time.Second, s.snapshot().Asleep, "time asleep so far counts")
	close(stop)
	assert.False(t, released(t, p))
}

// pmMachine is the part of a Machine the S3 path uses, without KVM: the
// port bus, the PIIX4 PM block as direct boot places it, and an RTC whose
// alarm timer the test fires.
type pmMachine struct {
	m     *Machine
	rtc   *cmos.CMOS
	clk   *stepClock
	fire  func()
	delay time.Duration
}

func newPMMachine(t *testing.T) *pmMachine {
	t.Helper()
	pm := &pmMachine{clk: &stepClock{t: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)}}
	m := &Machine{cfg: Config{CPUs: 1, Memory: 64 << 20}, log: slog.New(slog.DiscardHandler),
		latch: newStopLatch(), pio: bus.New("pio")}
	blk, err := m.directPM()
	require.NoError(t, err)
	require.True(t, blk.S3, "direct boot offers S3")
	require.NotNil(t, m.sleep)
	pm.m = m
	pm.rtc = cmos.New(m.cfg.Memory, pm.clk.now)
	pm.rtc.Connect(cmos.Interrupts{Alarm: m.rtcAlarm, After: func(d time.Duration, f func()) func() bool {
		pm.delay, pm.fire = d, f
		return func() bool { return true }
	}})
	return pm
}

func (p *pmMachine) out16(port uint16, v uint16) {
	p.m.pio.Write(uint64(port), binary.LittleEndian.AppendUint16(nil, v))
}

func (p *pmMachine) in16(port uint16) uint16 {
	b := make([]byte, 2)
	p.m.pio.Read(uint64(port), b)
	return binary.LittleEndian.Uint16(b)
}

func (p *pmMachine) cmosSet(reg, v byte) {
	p.rtc.Write(0, []byte{reg})
	p.rtc.Write(1, []byte{v})
}

// armAlarm does what rtc-cmos does for rtcwake -s 3: alarm 3 s ahead, AIE.
func (p *pmMachine) armAlarm() {
	p.cmosSet(0x05, 0x09)
	p.cmosSet(0x03, 0x00)
	p.cmosSet(0x01, 0x03)
	p.cmosSet(0x0b, 0x02|0x20)
}

const (
	pm1Status  = layout.PortPMBase
	pm1Enable  = layout.PortPMBase + 2
	pm1Control = layout.PortPMBase + 4
	slpS3      = layout.SleepTypeS3<<10 | 1<<13 | 1
	wakSts     = 1 << 15
)

// TestS3WakeByRTCAlarm follows Linux's rtcwake -m mem: RTC_EN, the alarm,
// SLP_TYP=1|SLP_EN. The machine sleeps (the vCPU parks) until the alarm;
// then PM1 status shows WAK_STS and RTC_STS and the report counts it.
func TestS3WakeByRTCAlarm(t *testing.T) {
	p := newPMMachine(t)
	m := p.m
	p.out16(pm1Enable, piix.PM1RTC)
	p.armAlarm()
	require.Equal(t, 3*time.Second, p.delay)
	p.out16(pm1Control, slpS3)
	require.True(t, m.sleep.sleeping(), "SLP_TYP=S3 with SLP_EN did not suspend")
	select {
	case <-m.latch.Done():
		t.Fatalf("S3 stopped the VM: %v", m.latch.Reason())
	default:
	}
	vcpu := parkAsync(m.sleep, m.latch.Done())
	stillParked(t, vcpu)
	assert.Zero(t, p.in16(pm1Status)&wakSts, "WAK_STS while asleep")
	p.clk.advance(p.delay)
	p.fire()
	assert.True(t, released(t, vcpu))
	assert.Equal(t, uint16(wakSts|piix.PM1RTC), p.in16(pm1Status))
	st := m.sleep.snapshot()
	assert.Equal(t, 1, st.Suspends)
	assert.Equal(t, 1, st.Resumes)
	assert.Equal(t, "rtc alarm", st.LastWake)
	// The OS clears both with a write of ones.
	p.out16(pm1Status, wakSts|piix.PM1RTC)
	assert.Zero(t, p.in16(pm1Status))
}

// TestS3AlarmNeedsRTCEnable: with RTC_EN clear the alarm sets RTC_STS but
// the machine sleeps on; the host's wake (the power button) wakes it.
// S5 still powers off.
func TestS3AlarmNeedsRTCEnable(t *testing.T) {
	p := newPMMachine(t)
	m := p.m
	p.armAlarm()
	p.out16(pm1Control, slpS3)
	vcpu := parkAsync(m.sleep, m.latch.Done())
	p.clk.advance(p.delay)
	p.fire()
	stillParked(t, vcpu)
	assert.True(t, m.sleep.sleeping())
	assert.Equal(t, uint16(piix.PM1RTC), p.in16(pm1Status), "RTC_STS without WAK_STS")
	require.True(t, m.Wake())
	assert.True(t, released(t, vcpu))
	assert.Equal(t, uint16(wakSts|piix.PM1RTC|piix.PM1PowerButton), p.in16(pm1Status))
	assert.Equal(t, "host", m.sleep.snapshot().LastWake)
	assert.False(t, m.Wake(), "host wake while running")

	p.out16(pm1Control, layout.SleepTypeS5<<10|1<<13)
	assert.Equal(t, StopPowerOff, m.latch.Reason().Kind)
	assert.False(t, m.sleep.sleeping())
}

// TestS3NotOfferedReduced: hardware-reduced ACPI has no PM block, no S3.
func TestS3NotOfferedReduced(t *testing.T) {
	m := &Machine{cfg: Config{CPUs: 1, ACPI: ACPIReduced}, log: slog.New(slog.DiscardHandler), latch: newStopLatch(), pio: bus.New("pio")}
	blk, err := m.directPM()
	require.NoError(t, err)
	assert.Nil(t, blk)
	assert.False(t, m.s3Offered())
	assert.False(t, m.Wake())
}

func facsImage(at uint64, vec uint32, xvec uint64) []byte {
	mem := make([]byte, at+64)
	f := mem[at:]
	copy(f, "FACS")
	binary.LittleEndian.PutUint32(f[4:], 64)
	binary.LittleEndian.PutUint32(f[facsWakingVector:], vec)
	binary.LittleEndian.PutUint64(f[facsXWakingVector:], xvec)
	return mem
}

// longModeSregs is a boot CPU as Linux leaves it when it writes SLP_EN.
func longModeSregs() kvm.Sregs {
	return kvm.Sregs{CR0: 0x80050033, CR3: 0x1000, CR4: 0x3506f0, EFER: 0xd01,
		APICBase: layout.LAPICBase | 0x900 | 0x400, CS: kvm.Segment{Selector: 0x10, L: 1, Present: 1, S: 1, Type: 0xb}}
}

// TestWakeEntry: the boot CPU resumes where firmware would send it.
func TestWakeEntry(t *testing.T) {
	const facs = 0x2000
	t.Run("real mode", func(t *testing.T) {
		sregs, regs := longModeSregs(), kvm.Regs{RIP: 0xffffffff81000000, RAX: 7, RFLAGS: 0x246}
		require.NoError(t, wakeEntry(bytes.NewReader(facsImage(facs, 0x9a0f4, 0)), facs, &sregs, &regs))
		assert.Equal(t, kvm.Regs{RIP: 4, RFLAGS: 2}, regs)
		assert.Equal(t, uint16(0x9a0f), sregs.CS.Selector)
		assert.Equal(t, uint64(0x9a0f0), sregs.CS.Base)
		assert.Equal(t, uint32(0xffff), sregs.CS.Limit)
		assert.Zero(t, sregs.CS.L)
		assert.Zero(t, sregs.CS.DB)
		assert.Equal(t, uint64(cr0ET), sregs.CR0, "real mode, caches on")
		assert.Zero(t, sregs.CR3|sregs.CR4|sregs.EFER)
		assert.Equal(t, uint64(layout.LAPICBase|apicBaseBSP|apicBaseEnable), sregs.APICBase, "xAPIC, not x2APIC")
		for _, s := range []kvm.Segment{sregs.DS, sregs.ES, sregs.SS} {
			assert.Equal(t, kvm.Segment{Limit: 0xffff, Type: 3, Present: 1, S: 1}, s)
		}
	})
	t.Run("X vector", func(t *testing.T) {
		sregs, regs := longModeSregs(), kvm.Regs{}
		require.NoError(t, wakeEntry(bytes.NewReader(facsImage(facs, 0x9a000, 0x100000)), facs, &sregs, &regs))
		assert.Equal(t, uint64(0x100000), regs.RIP, "X_Firmware_Waking_Vector wins")
		assert.Equal(t, uint64(cr0ET|cr0PE), sregs.CR0, "flat 32-bit protected mode, paging off")
		assert.Equal(t, uint8(1), sregs.CS.DB)
		assert.Zero(t, sregs.CS.L)
		assert.Equal(t, uint32(0xffffffff), sregs.SS.Limit)
		assert.Zero(t, sregs.EFER)
	})
	for _, tc := range []struct {
		name string
		mem  []byte
		err  string
	}{
		{"no vector", facsImage(facs, 0, 0), "no waking vector"},
		{"vector above 1 MiB", facsImage(facs, 0x100000, 0), "not below 1 MiB"},
		{"X vector above 4 GiB", facsImage(facs, 0, 1<<32), "beyond 4 GiB"},
		{"no FACS", make([]byte, facs+64), "no FACS signature"},
		{"outside memory", make([]byte, 16), "read the FACS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sregs, regs := longModeSregs(), kvm.Regs{}
			require.ErrorContains(t, wakeEntry(bytes.NewReader(tc.mem), facs, &sregs, &regs), tc.err)
		})
	}
	sregs, regs := longModeSregs(), kvm.Regs{}
	require.ErrorIs(t, wakeEntry(bytes.NewReader(facsImage(facs, 0, 0)), facs, &sregs, &regs), ErrNoWakingVector)
}

// TestS3OfferedSMP: with several vCPUs the PC ACPI offers \_S3 as well
// (APs are reset for the OS to restart), and the machine wakes only once
// every vCPU has parked.
func TestS3OfferedSMP(t *testing.T) {
	m := &Machine{cfg: Config{CPUs: 2, ACPI: ACPIPC}, log: slog.New(slog.DiscardHandler), latch: newStopLatch(), pio: bus.New("pio")}
	blk, err := m.directPM()
	require.NoError(t, err)
	require.NotNil(t, blk)
	assert.True(t, blk.S3)
	require.True(t, m.s3Offered())
	p := &pmMachine{m: m}
	p.out16(pm1Control, slpS3)
	require.True(t, m.sleep.sleeping())
	bsp := parkAsync(m.sleep, m.latch.Done())
	require.True(t, m.Wake())
	stillParked(t, bsp)
	ap := parkAsync(m.sleep, m.latch.Done())
	assert.True(t, released(t, bsp))
	assert.True(t, released(t, ap))
	assert.Equal(t, 1, m.sleep.snapshot().Resumes)
}

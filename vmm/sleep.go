package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/devices/cmos"
	"github.com/vmmdev/vmm/devices/piix"
	"github.com/vmmdev/vmm/layout"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// ACPI S3 (suspend to RAM) in direct boot and under SeaBIOS. The guest's
// PM1 control write of SLP_TYP=S3 with SLP_EN parks every vCPU thread
// outside KVM_RUN; RAM and the devices stay as they are. A wake event (the
// RTC alarm with RTC_EN, or Machine.Wake) sets WAK_STS and releases them as
// a platform leaving S3 does: the application processors are in their
// power-on state waiting for INIT/SIPI (cpureset.go), and the boot CPU
// starts where firmware would send it, at the FACS waking vector, in real
// mode (or flat 32-bit protected mode at X_Firmware_Waking_Vector). There
// is no firmware in direct boot, so vmm does the firmware's part; SeaBIOS
// does its own from the reset vector (resumeBootCPU).

// SleepStats counts suspend-to-RAM cycles for the report.
type SleepStats struct {
	// Suspends counts S3 entries, Resumes the wakes that followed.
	Suspends, Resumes int
	// Asleep is the total time spent in S3.
	Asleep time.Duration
	// LastWake names the last wake event ("rtc alarm", "host").
	LastWake string
}

// sleeper is the S3 state shared by the vCPU threads and the wake sources.
type sleeper struct {
	n   int // vCPUs that must park before the machine counts as asleep
	now func() time.Time
	// gen counts suspends; each vCPU parks once per value (vcpu.sleepGen).
	gen atomic.Uint64

	mu       sync.Mutex
	asleep   bool
	woken    bool
	parked   int
	released chan struct{}
	since    time.Time
	onWake   func() // sets WAK_STS before the vCPUs run again
	stats    SleepStats
}

func newSleeper(n int, now func() time.Time) *sleeper {
	return &sleeper{n: n, now: now}
}

// suspend starts an S3 cycle; false if one is already under way (a second
// SLP_EN write from another vCPU).
func (s *sleeper) suspend() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.asleep {
		return false
	}
	s.asleep, s.woken, s.parked = true, false, 0
	s.released = make(chan struct{})
	s.since = s.now()
	s.stats.Suspends++
	s.gen.Add(1)
	return true
}

// park counts the calling vCPU as parked and blocks until the machine is
// woken and every vCPU has parked, or stop closes (false).
func (s *sleeper) park(stop <-chan struct{}) bool {
	s.mu.Lock()
	s.parked++
	released := s.released
	s.maybeRelease()
	s.mu.Unlock()
	select {
	case <-released:
		return true
	case <-stop:
		return false
	}
}

// wake delivers a wake event; false if the machine is not asleep (or
// already woken). onWake runs before any vCPU is released.
func (s *sleeper) wake(reason string, onWake func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.asleep || s.woken {
		return false
	}
	s.woken, s.onWake = true, onWake
	s.stats.LastWake = reason
	s.maybeRelease()
	return true
}

// maybeRelease lets the vCPUs go once woken with all of them parked; a
// wake that comes before the last vCPU parked waits for it, so none runs
// guest code while another still holds pre-suspend state.
func (s *sleeper) maybeRelease() {
	if !s.asleep || !s.woken || s.parked < s.n {
		return
	}
	if s.onWake != nil {
		s.onWake()
	}
	s.asleep = false
	s.stats.Resumes++
	s.stats.Asleep += s.now().Sub(s.since)
	close(s.released)
}

// sleeping reports whether the machine is in S3.
func (s *sleeper) sleeping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asleep
}

func (s *sleeper) snapshot() SleepStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	if s.asleep {
		st.Asleep += s.now().Sub(s.since)
	}
	return st
}

// FACS fields (ACPI 6.5 §5.2.10).
const (
	facsWakingVector  = 12
	facsFlags         = 24 - 4 // Flags, before X_Firmware_Waking_Vector
	facsXWakingVector = 24
	facsOSPMFlags     = 36
	facsSize          = 40
	facs64BitWakeSup  = 1 << 1 // Flags: the platform can wake into 64-bit mode
	ospm64BitWake     = 1 << 0 // OSPM flags: wake into 64-bit mode
)

// ErrNoWakingVector: the OS slept without telling where to resume.
var ErrNoWakingVector = errors.New("S3 wake: the FACS has no waking vector")

// wakeEntry reads the FACS at facs and returns the boot CPU's state on
// resume, changing sregs (from KVM_GET_SREGS) and overwriting regs. A
// non-zero X_Firmware_Waking_Vector wins and is entered in flat 32-bit
// protected mode with paging off (the FACS does not offer 64-bit wake);
// otherwise Firmware_Waking_Vector is entered in real mode at
// CS:IP = vector>>4 : vector&0xF, as ACPI says firmware does.
func wakeEntry(mem io.ReaderAt, facs uint64, sregs *kvm.Sregs, regs *kvm.Regs) error {
	var f [facsSize]byte
	if _, err := mem.ReadAt(f[:], int64(facs)); err != nil {
		return fmt.Errorf("S3 wake: read the FACS at %#x: %w", facs, err)
	}
	if string(f[:4]) != "FACS" {
		return fmt.Errorf("S3 wake: no FACS signature at %#x", facs)
	}
	vec := uint64(binary.LittleEndian.Uint32(f[facsWakingVector:]))
	xvec := binary.LittleEndian.Uint64(f[facsXWakingVector:])
	// Caches on and paging off, as firmware hands over; no GDT or IDT the
	// OS could rely on (its wakeup code loads its own).
	sregs.CR0, sregs.CR2, sregs.CR3, sregs.CR4, sregs.EFER = cr0ET, 0, 0, 0, 0
	sregs.GDT = kvm.DTable{Limit: 0xffff}
	sregs.IDT = kvm.DTable{Limit: 0xffff}
	sregs.TR = kvm.Segment{Limit: 0xffff, Type: 0xb, Present: 1}
	sregs.LDT = kvm.Segment{Limit: 0xffff, Type: 0x2, Present: 1}
	// The boot CPU's LAPIC back in xAPIC mode at its reset base.
	sregs.APICBase = layout.LAPICBase | apicBaseBSP | apicBaseEnable
	sregs.InterruptBitmap = [4]uint64{}
	*regs = kvm.Regs{RFLAGS: 2}
	switch {
	case xvec != 0:
		if xvec > 0xffffffff {
			return fmt.Errorf("S3 wake: X_Firmware_Waking_Vector %#x beyond 4 GiB", xvec)
		}
		code := kvm.Segment{Limit: 0xffffffff, Type: 0xb, Present: 1, S: 1, DB: 1, G: 1}
		data := kvm.Segment{Limit: 0xffffffff, Type: 0x3, Present: 1, S: 1, DB: 1, G: 1}
		sregs.CS, sregs.DS, sregs.ES, sregs.FS, sregs.GS, sregs.SS = code, data, data, data, data, data
		sregs.CR0 |= cr0PE
		regs.RIP = xvec
	case vec != 0:
		if vec >= 1<<20 {
			return fmt.Errorf("S3 wake: Firmware_Waking_Vector %#x is not below 1 MiB", vec)
		}
		sel := uint16(vec >> 4)
		sregs.CS = kvm.Segment{Base: uint64(sel) << 4, Limit: 0xffff, Selector: sel, Type: 0xb, Present: 1, S: 1}
		data := kvm.Segment{Limit: 0xffff, Type: 0x3, Present: 1, S: 1}
		sregs.DS, sregs.ES, sregs.FS, sregs.GS, sregs.SS = data, data, data, data, data
		regs.RIP = vec & 0xf
	default:
		return ErrNoWakingVector
	}
	return nil
}

const (
	cr0PE          = 1 << 0
	cr0ET          = 1 << 4
	apicBaseBSP    = 1 << 8
	apicBaseEnable = 1 << 11
)

// s3Offered reports whether this machine offers S3: direct boot's PC
// ACPI, and SeaBIOS.
func (m *Machine) s3Offered() bool { return m.sleep != nil }

// suspend enters S3 on the guest's request: every vCPU leaves KVM_RUN and
// parks (runVCPU checks sleep.gen before each entry).
func (m *Machine) suspend() {
	if !m.sleep.suspend() {
		return
	}
	if m.rtc != nil {
		m.rtc.SetShutdownStatus(cmos.ShutdownS3Resume)
	}
	m.log.Info("guest suspended to RAM (ACPI S3)")
	for _, v := range m.vcpus {
		v.kick()
	}
}

// Wake delivers a host-side wake event (the power button) to a machine in
// S3; it reports whether the machine was asleep. The button's status bit is
// set either way, as the hardware does.
func (m *Machine) Wake() bool {
	if m.pm == nil || m.sleep == nil {
		return false
	}
	m.pm.Event(piix.PM1PowerButton)
	return m.wake("host")
}

// rtcAlarm is the RTC's enabled alarm: RTC_STS, and a wake if RTC_EN is set.
func (m *Machine) rtcAlarm() {
	if m.pm == nil {
		return
	}
	if m.pm.Event(piix.PM1RTC) && m.sleep != nil {
		m.wake("rtc alarm")
	}
}

func (m *Machine) wake(reason string) bool {
	ok := m.sleep.wake(reason, m.pm.Woke)
	if ok {
		m.log.Info("guest woken from S3", "by", reason)
	}
	return ok
}

// parkVCPU is a vCPU's part of an S3 cycle, on its own thread: an
// application processor is reset to wait for INIT, then all wait for the
// wake; the boot CPU then starts at the waking vector. False if the VM stopped
// (or the boot CPU could not resume, which stops it).
func (m *Machine) parkVCPU(v *vcpu) bool {
	// One KVM_RUN that returns at once completes the exit just handled
	// (the PM1 control write), so nothing of it is left for the new state.
	run := v.kvm.RunData()
	run.ImmediateExit = 1
	if err := v.kvm.Run(); err != nil && !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.EAGAIN) {
		m.latch.Stop(StopReason{Kind: StopError, Source: fmt.Sprintf("vcpu%d", v.id), Err: fmt.Errorf("S3: leave KVM_RUN: %w", err)})
		return false
	}
	if v.id != 0 {
		// Reset now: the OS took the AP offline before it slept, so no
		// interrupt is on its way to it, and it is ready for INIT/SIPI
		// the moment the boot CPU resumes.
		if err := m.resetAP(v.kvm, v.id); err != nil {
			m.latch.Stop(StopReason{Kind: StopError, Source: fmt.Sprintf("vcpu%d", v.id), Err: fmt.Errorf("S3: reset: %w", err)})
			return false
		}
	}
	if !m.sleep.park(m.latch.Done()) {
		return false
	}
	run.ImmediateExit = 0
	if v.id != 0 {
		return true
	}
	if err := m.resumeBootCPU(v.kvm); err != nil {
		kind := StopError
		if errors.Is(err, ErrNoWakingVector) {
			kind = StopReset // what firmware does: boot afresh
		}
		m.latch.Stop(StopReason{Kind: kind, Source: "acpi", Detail: "S3 resume", Err: err})
		return false
	}
	return true
}

// resumeBootCPU puts the boot CPU in its power-on state. With firmware it
// starts at the reset vector, and the firmware resumes: SeaBIOS, still in
// its shadow RAM, finds the shutdown status suspend set and jumps to the
// OS's waking vector. In direct boot vmm does the firmware's part and
// starts it at the waking vector. Its LAPIC register page stays (the mode
// goes back to xAPIC, the LINT wiring to the PC's): vmm keeps the IOAPIC
// across S3, and a level-triggered interrupt accepted while the machine
// slept (the SCI of the wake event) must still reach the OS and be EOIed,
// or the IOAPIC's Remote IRR would hold that line for good.
func (m *Machine) resumeBootCPU(v *kvm.VCPU) error {
	sig, err := signature(v)
	if err != nil {
		return fmt.Errorf("S3 wake: %w", err)
	}
	sregs, regs := resetSregs(true), resetRegs(sig)
	if !m.boot.fromReset() {
		if err := wakeEntry(m.mem, m.facs, &sregs, &regs); err != nil {
			return err
		}
	}
	if err := v.SetMPState(kvm.MPStateRunnable); err != nil {
		return fmt.Errorf("S3 wake: set MP state: %w", err)
	}
	if err := v.SetSregs(sregs); err != nil {
		return fmt.Errorf("S3 wake: set sregs: %w", err)
	}
	if err := v.SetRegs(regs); err != nil {
		return fmt.Errorf("S3 wake: set regs: %w", err)
	}
	if err := m.resetArch(v); err != nil {
		return fmt.Errorf("S3 wake: %w", err)
	}
	// Nothing injected before the suspend may land in the wakeup code.
	if err := clearEvents(v); err != nil {
		return fmt.Errorf("S3 wake: %w", err)
	}
	if err := setLINTs(v); err != nil {
		return fmt.Errorf("S3 wake: %w", err)
	}
	return nil
}

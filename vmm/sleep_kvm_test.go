package vmm

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/layout"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// s3WakeVector is where the tiny guest asks to resume: CS 0x900, IP 0.
const s3WakeVector = 0x9000

// s3Alarm arms the RTC alarm for every second (all three alarm registers
// "don't care") with AIE.
func s3Alarm() []byte {
	cmos := func(reg, v byte) []byte { return []byte{0xb0, reg, 0xe6, 0x70, 0xb0, v, 0xe6, 0x71} }
	var c []byte
	c = append(c, cmos(0x01, 0xc0)...)
	c = append(c, cmos(0x03, 0xc0)...)
	c = append(c, cmos(0x05, 0xc0)...)
	c = append(c, cmos(0x0b, 0x22)...)                   // 24-hour, AIE
	return append(c, 0xb0, 0x0c, 0xe6, 0x70, 0xe4, 0x71) // read status C
}

// s3Enter enables RTC_EN and enters S3 through the PM block at 0x600.
// Falling through the sleep request exits with 0xee.
func s3Enter() []byte {
	return []byte{
		0xba, 0x02, 0x06, 0xb8, 0x00, 0x04, 0xef, // PM1 enable = RTC_EN
		0xba, 0x04, 0x06, 0xb8, 0x01, 0x24, 0xef, // PM1 control = SLP_TYP 1 | SLP_EN | SCI_EN
		0xb0, 0xee, 0xe6, 0xf4, 0xf4, // not reached: exit 0xee
	}
}

// s3Sleep is s3Alarm, s3WakeVector stored as the FACS waking vector, and
// s3Enter.
func s3Sleep(facs uint64) []byte {
	c := s3Alarm()
	seg, off := uint16(facs>>4), uint16(facs&0xf)+facsWakingVector
	c = append(c, 0xb8, byte(seg), byte(seg>>8), 0x8e, 0xc0) // mov ax, seg; mov es, ax
	c = append(c, 0x66, 0x26, 0xc7, 0x06, byte(off), byte(off>>8))
	c = binary.LittleEndian.AppendUint32(c, s3WakeVector) // mov dword [es:off], vector
	return append(c, s3Enter()...)
}

// s3ExitPM1 exits with PM1 status: what the one-CPU guests run at the
// waking vector.
var s3ExitPM1 = []byte{
	0xba, 0x00, 0x06, // mov dx, 0x600
	0xed,       // in ax, dx (PM1 status)
	0xe7, 0xf4, // out 0xf4, ax
	0xf4,
}

// s3Guest is the one-CPU guest: s3Sleep, and s3ExitPM1 at the waking
// vector.
func s3Guest(facs uint64) (main, wake []byte) {
	return s3Sleep(facs), s3ExitPM1
}

// The two-CPU guest's AP code (started by SIPI vector 8 at 0x8000) and the
// byte it counts its starts in.
const (
	s3APCode    = 0x8000
	s3APStarted = 0x8100
)

// x2APICOn switches the running CPU's LAPIC to x2APIC mode, as Linux does
// on every CPU when the CPUID offers it (IA32_APIC_BASE |= EN | EXTD).
var x2APICOn = []byte{
	0x66, 0xb9, 0x1b, 0x00, 0x00, 0x00, // mov ecx, 0x1b
	0x0f, 0x32, // rdmsr
	0x0d, 0x00, 0x0c, // or ax, 0xc00
	0x0f, 0x30, // wrmsr
}

// startAP sends INIT and SIPI (vector 8) to APIC ID 1 through the x2APIC
// ICR, then waits until the AP has counted its n-th start.
func startAP(n byte) []byte {
	c := []byte{
		0x66, 0xb9, 0x30, 0x08, 0x00, 0x00, // mov ecx, 0x830 (x2APIC ICR)
		0x66, 0xba, 0x01, 0x00, 0x00, 0x00, // mov edx, 1 (destination)
		0x66, 0xb8, 0x00, 0x45, 0x00, 0x00, // mov eax, 0x4500 (INIT, assert)
		0x0f, 0x30, // wrmsr
		0x66, 0xb8, 0x08, 0x46, 0x00, 0x00, // mov eax, 0x4608 (SIPI, vector 8)
		0x0f, 0x30, // wrmsr
		0xf3, 0x90, // pause
	}
	c = append(c, 0x80, 0x3e, byte(s3APStarted&0xff), byte(s3APStarted>>8), n) // cmp byte [s3APStarted], n
	return append(c, 0x75, 0xf7)                                               // jne pause
}

// s3SMPGuest: the boot CPU and the AP both enter x2APIC mode; the boot CPU
// starts the AP, suspends (the AP halted with interrupts off, as an OS
// leaves a CPU it took offline), and at the waking vector starts the AP
// again with INIT-SIPI in x2APIC mode, as Linux does after a resume. It
// exits with the AP's start count.
func s3SMPGuest(facs uint64) (main, ap, wake []byte) {
	main = append(append(append([]byte{}, x2APICOn...), startAP(1)...), s3Sleep(facs)...)
	ap = append(append([]byte{}, x2APICOn...),
		0xf0, 0xfe, 0x06, byte(s3APStarted&0xff), byte(s3APStarted>>8), // lock inc byte [s3APStarted]
		0xfa,       // cli
		0xf4,       // hlt
		0xeb, 0xfd, // jmp hlt
	)
	wake = append(append(append([]byte{}, x2APICOn...), startAP(2)...),
		0xa0, byte(s3APStarted&0xff), byte(s3APStarted>>8), // mov al, [s3APStarted]
		0xe6, 0xf4, // out 0xf4, al
		0xf4)
	return main, ap, wake
}

// TestKVMS3RoundTrip: a guest suspends to RAM, the RTC alarm wakes it, and
// its boot CPU resumes in real mode at the waking vector with WAK_STS and
// RTC_STS set.
func TestKVMS3RoundTrip(t *testing.T) {
	kvmtest.Require(t)
	m, err := New(Config{Program: realModeProgram([]byte{0xf4}), CPUs: 1, Memory: testMemory, Timeout: 20 * time.Second}, nil)
	require.NoError(t, err)
	defer m.Close()
	require.NotZero(t, m.facs, "direct boot's PC ACPI has a FACS")
	main, wake := s3Guest(m.facs)
	_, err = m.Memory().WriteAt(main, 0x7c00)
	require.NoError(t, err)
	_, err = m.Memory().WriteAt(wake, s3WakeVector)
	require.NoError(t, err)
	res := m.Run(context.Background())
	require.Equal(t, StopDebugExit, res.Reason.Kind, res.Reason.String())
	require.Equal(t, uint32(0x8400), res.Reason.Value, "PM1 status at the waking vector: WAK_STS|RTC_STS")
	require.NotNil(t, res.Sleep)
	require.Equal(t, 1, res.Sleep.Suspends)
	require.Equal(t, 1, res.Sleep.Resumes)
	require.Equal(t, "rtc alarm", res.Sleep.LastWake)
	require.Positive(t, res.Sleep.Asleep)
	require.LessOrEqual(t, res.Sleep.Asleep, 2*time.Second, "the every-second alarm woke it")
}

// TestKVMS3RoundTripSMP: with two vCPUs the guest suspends, the RTC alarm
// wakes it, and the boot CPU starts the AP again with INIT-SIPI from the
// waking vector: the AP, in x2APIC mode before the suspend, is reset to
// xAPIC mode with its own APIC ID, so the IPI finds it.
func TestKVMS3RoundTripSMP(t *testing.T) {
	kvmtest.Require(t)
	m, err := New(Config{Program: realModeProgram([]byte{0xf4}), CPUs: 2, Memory: testMemory, Timeout: 30 * time.Second}, nil)
	require.NoError(t, err)
	defer m.Close()
	require.True(t, m.s3Offered(), "S3 with two vCPUs")
	main, ap, wake := s3SMPGuest(m.facs)
	for addr, code := range map[int64][]byte{0x7c00: main, s3APCode: ap, s3WakeVector: wake} {
		_, err = m.Memory().WriteAt(code, addr)
		require.NoError(t, err)
	}
	res := m.Run(context.Background())
	require.Equal(t, StopDebugExit, res.Reason.Kind, "the AP did not start again after the resume: %s", res.Reason.String())
	require.Equal(t, uint32(2), res.Reason.Value, "AP starts: before the suspend and after the resume")
	require.NotNil(t, res.Sleep)
	require.Equal(t, 1, res.Sleep.Suspends)
	require.Equal(t, 1, res.Sleep.Resumes)
	require.Equal(t, "rtc alarm", res.Sleep.LastWake)
}

// TestKVMResetAP: KVM takes the reset state resetAP writes, for an AP the
// guest left in x2APIC mode in long mode: xAPIC mode with the APIC ID in
// bits 31:24, CR0 60000010, EFER 0, F000:FFF0, waiting for INIT.
func TestKVMResetAP(t *testing.T) {
	kvmtest.Require(t)
	m, err := New(Config{Program: realModeProgram([]byte{0xf4}), CPUs: 2, Memory: testMemory}, nil)
	require.NoError(t, err)
	defer m.Close()
	v := m.vcpus[1].kvm
	sregs, err := v.GetSregs()
	require.NoError(t, err)
	sregs.APICBase |= 1 << 10 // x2APIC
	require.NoError(t, v.SetSregs(sregs))
	require.NoError(t, v.SetMPState(kvm.MPStateRunnable))

	require.NoError(t, m.resetAP(v, 1))
	sregs, err = v.GetSregs()
	require.NoError(t, err)
	require.Equal(t, uint64(layout.LAPICBase|apicBaseEnable), sregs.APICBase)
	require.Equal(t, uint64(resetCR0), sregs.CR0)
	require.Zero(t, sregs.EFER)
	require.Equal(t, uint64(0xffff0000), sregs.CS.Base)
	regs, err := v.GetRegs()
	require.NoError(t, err)
	require.Equal(t, uint64(0xfff0), regs.RIP)
	require.NotZero(t, regs.RDX, "the processor signature")
	st, err := v.GetLAPIC()
	require.NoError(t, err)
	require.Equal(t, uint32(1)<<24, st.Reg(apicRegID), "xAPIC ID 1")
	require.Equal(t, uint32(apicResetSVR), st.Reg(apicRegSVR))
	require.Equal(t, uint32(apicLVTMasked), st.Reg(apicLVTTimer))
	mp, err := v.GetMPState()
	require.NoError(t, err)
	require.Equal(t, kvm.MPStateUninitialized, mp)
	ev, err := v.GetVCPUEvents()
	require.NoError(t, err)
	require.Zero(t, ev.SMI.LatchedInit)
	require.Zero(t, ev.NMI.Pending)
}

// s3Ready is the byte the SeaBIOS guest writes to COM1 once it runs (SeaBIOS
// never prints it); s3Go the byte it then waits on, set by the host once it
// has stored the waking vector.
const (
	s3Ready = 0x01
	s3Go    = 0x5f0
)

// s3OS plays the OS's part the boot sector has no room for: on s3Ready it
// finds the FACS SeaBIOS placed in RAM, stores the waking vector there and
// sets s3Go.
type s3OS struct {
	mu     sync.Mutex
	m      *Machine
	vector uint32
	facs   uint64
	err    error
	out    bytes.Buffer
}

func (o *s3OS) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.out.Write(p)
	if bytes.IndexByte(p, s3Ready) < 0 || o.facs != 0 || o.err != nil {
		return len(p), nil
	}
	o.facs, o.err = findFACS(o.m.Memory(), testMemory)
	if o.err == nil {
		_, o.err = o.m.Memory().WriteAt(binary.LittleEndian.AppendUint32(nil, o.vector), int64(o.facs+facsWakingVector))
	}
	if o.err == nil {
		_, o.err = o.m.Memory().WriteAt([]byte{1}, s3Go)
	}
	return len(p), nil
}

// findFACS finds the one FACS (64-byte aligned, length 64) in RAM below size.
func findFACS(mem io.ReaderAt, size int64) (uint64, error) {
	var found []uint64
	buf := make([]byte, 1<<20)
	for base := int64(0); base < size; base += int64(len(buf)) {
		if _, err := mem.ReadAt(buf, base); err != nil {
			return 0, err
		}
		for i := 0; i < len(buf); i += 64 {
			if string(buf[i:i+4]) == "FACS" && binary.LittleEndian.Uint32(buf[i+4:]) == 64 {
				found = append(found, uint64(base)+uint64(i))
			}
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("want one FACS in RAM, found %d at %#x", len(found), found)
	}
	return found[0], nil
}

// TestKVMSeaBIOSS3: SeaBIOS offers S3 and resumes from it. A boot sector
// (the OS) arms the RTC alarm and suspends; on the wake the boot CPU starts
// at the reset vector, SeaBIOS (in its shadow RAM since POST) reads the
// CMOS shutdown status vmm set on suspend (0xFE) and jumps to the FACS
// waking vector, where the boot sector exits with PM1 status.
func TestKVMSeaBIOSS3(t *testing.T) {
	requireSeaBIOS(t)
	main := []byte{
		0xfa,       // cli
		0x31, 0xc0, // xor ax, ax
		0x8e, 0xd8, // mov ds, ax
		0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xb0, s3Ready, // mov al, s3Ready
		0xee,       // out dx, al
		0xf3, 0x90, // pause
		0x80, 0x3e, byte(s3Go & 0xff), byte(s3Go >> 8), 0x00, // cmp byte [s3Go], 0
		0x74, 0xf7, // je pause
	}
	main = append(append(main, s3Alarm()...), s3Enter()...)
	guestOS := &s3OS{vector: uint32(0x7c00 + len(main))}
	disk := bootSector(t, append(main, s3ExitPM1...))
	m, err := New(Config{Firmware: "seabios", CPUs: 1, Memory: testMemory, Timeout: 60 * time.Second,
		Disks: []Disk{{Path: disk, ReadOnly: true}}, ConsoleOut: guestOS}, nil)
	require.NoError(t, err)
	defer m.Close()
	require.True(t, m.s3Offered(), "SeaBIOS offers S3")
	guestOS.m = m
	res := m.Run(context.Background())
	guestOS.mu.Lock()
	defer guestOS.mu.Unlock()
	require.NoError(t, guestOS.err)
	require.Equal(t, StopDebugExit, res.Reason.Kind, "reason: %v\nconsole: %q", res.Reason, guestOS.out.String())
	require.Equal(t, uint32(0x8400), res.Reason.Value, "PM1 status at the waking vector: WAK_STS|RTC_STS")
	require.NotNil(t, res.Sleep)
	require.Equal(t, 1, res.Sleep.Suspends)
	require.Equal(t, 1, res.Sleep.Resumes)
}

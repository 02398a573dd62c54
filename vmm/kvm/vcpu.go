package kvm

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// VCPU is a vCPU fd and its mmapped struct kvm_run. A VCPU is used from one
// goroutine (locked to its OS thread by the caller); only RunData().ImmediateExit
// may be written from elsewhere, to kick it out of Run.
type VCPU struct {
	fd  int
	id  int
	run []byte
}

// Close unmaps kvm_run and closes the vCPU fd.
func (v *VCPU) Close() error {
	var errs []error
	if v.run != nil {
		if err := unix.Munmap(v.run); err != nil {
			errs = append(errs, fmt.Errorf("munmap kvm_run of vCPU %d: %w", v.id, err))
		}
		v.run = nil
	}
	if err := closeFD(&v.fd, fmt.Sprintf("vCPU %d fd", v.id)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// FD returns the vCPU file descriptor (-1 after Close).
func (v *VCPU) FD() int { return v.fd }

// ID returns the vCPU id given to CreateVCPU (its initial APIC id).
func (v *VCPU) ID() int { return v.id }

// Run enters the guest until the next exit (KVM_RUN). The returned error wraps
// the raw errno: errors.Is(err, unix.EINTR) is a signal or immediate_exit,
// errors.Is(err, unix.EAGAIN) a spurious wake-up; both mean "run again".
func (v *VCPU) Run() error {
	if _, err := ioctl(v.fd, kvmRun, 0); err != nil {
		return fmt.Errorf("KVM_RUN on vCPU %d: %w", v.id, err)
	}
	return nil
}

// RunData is the typed view of the vCPU's shared kvm_run page. It is valid
// until Close, after which RunData returns nil.
func (v *VCPU) RunData() *RunData {
	if len(v.run) < int(unsafe.Sizeof(RunData{})) {
		return nil
	}
	return (*RunData)(unsafe.Pointer(&v.run[0]))
}

// IOData returns the data bytes of the current KVM_EXIT_IO inside the mapping
// (size*count bytes at data_offset), or nil when they do not lie within it.
// Userspace fills them for IOIn and reads them for IOOut.
func (v *VCPU) IOData() []byte {
	return ioData(v.run)
}

// NMI injects an NMI (KVM_NMI); it needs the in-kernel LAPIC.
func (v *VCPU) NMI() error {
	if _, err := ioctl(v.fd, kvmNMI, 0); err != nil {
		return fmt.Errorf("KVM_NMI on vCPU %d: %w", v.id, err)
	}
	return nil
}

// EnableCap enables a vCPU capability (KVM_ENABLE_CAP on the vCPU fd), such as CapHyperVSynIC.
func (v *VCPU) EnableCap(c Cap, args ...uint64) error {
	return enableCap(v.fd, fmt.Sprintf("vCPU %d", v.id), c, args)
}

// GetRegs returns the general-purpose registers (KVM_GET_REGS).
func (v *VCPU) GetRegs() (Regs, error) {
	var r Regs
	if _, err := ioctlPtr(v.fd, kvmGetRegs, unsafe.Pointer(&r)); err != nil {
		return Regs{}, fmt.Errorf("KVM_GET_REGS on vCPU %d: %w", v.id, err)
	}
	return r, nil
}

// SetRegs sets the general-purpose registers (KVM_SET_REGS).
func (v *VCPU) SetRegs(r Regs) error {
	if _, err := ioctlPtr(v.fd, kvmSetRegs, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("KVM_SET_REGS on vCPU %d: %w", v.id, err)
	}
	return nil
}

// GetSregs returns the segment and control registers (KVM_GET_SREGS).
func (v *VCPU) GetSregs() (Sregs, error) {
	var s Sregs
	if _, err := ioctlPtr(v.fd, kvmGetSregs, unsafe.Pointer(&s)); err != nil {
		return Sregs{}, fmt.Errorf("KVM_GET_SREGS on vCPU %d: %w", v.id, err)
	}
	return s, nil
}

// SetSregs sets the segment and control registers (KVM_SET_SREGS).
func (v *VCPU) SetSregs(s Sregs) error {
	if _, err := ioctlPtr(v.fd, kvmSetSregs, unsafe.Pointer(&s)); err != nil {
		return fmt.Errorf("KVM_SET_SREGS on vCPU %d: %w", v.id, err)
	}
	return nil
}

// ErrMSRsPartial means KVM processed fewer MSRs than asked; the message names
// the first MSR it stopped at.
var ErrMSRsPartial = errors.New("kvm: not all MSRs were processed")

// msrEntryWords is the size of one kvm_msr_entry in uint64 words.
const msrEntryWords = int(unsafe.Sizeof(MSREntry{}) / 8)

// msrsBuf builds struct kvm_msrs for entries in a []uint64 (8-byte aligned).
func msrsBuf(entries []MSREntry) []uint64 {
	buf := make([]uint64, 1+len(entries)*msrEntryWords)
	(*kvmMSRsHeader)(unsafe.Pointer(&buf[0])).NMSRs = uint32(len(entries))
	if len(entries) > 0 {
		copy(unsafe.Slice((*MSREntry)(unsafe.Pointer(&buf[1])), len(entries)), entries)
	}
	return buf
}

// GetMSRs reads the given MSRs (KVM_GET_MSRS). It fails with ErrMSRsPartial
// if KVM could not read all of them.
func (v *VCPU) GetMSRs(indices []uint32) ([]MSREntry, error) {
	if len(indices) == 0 {
		return nil, nil
	}
	in := make([]MSREntry, len(indices))
	for i, idx := range indices {
		in[i].Index = idx
	}
	buf := msrsBuf(in)
	r, err := ioctlPtr(v.fd, kvmGetMSRs, unsafe.Pointer(&buf[0]))
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_MSRS on vCPU %d: %w", v.id, err)
	}
	if int(r) < len(indices) {
		return nil, fmt.Errorf("KVM_GET_MSRS on vCPU %d: read %d of %d, stopped at MSR %#x: %w",
			v.id, r, len(indices), indices[r], ErrMSRsPartial)
	}
	out := make([]MSREntry, len(indices))
	copy(out, unsafe.Slice((*MSREntry)(unsafe.Pointer(&buf[1])), len(indices)))
	return out, nil
}

// GetMSR reads one MSR (KVM_GET_MSRS) into a buffer on the stack: guests
// read their clocks through vmm at every timer tick, and GetMSRs allocates.
func (v *VCPU) GetMSR(index uint32) (uint64, error) {
	var buf struct {
		hdr   kvmMSRsHeader
		entry MSREntry
	}
	buf.hdr.NMSRs, buf.entry.Index = 1, index
	r, err := ioctlPtr(v.fd, kvmGetMSRs, unsafe.Pointer(&buf))
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_MSRS on vCPU %d: %w", v.id, err)
	}
	if r < 1 {
		return 0, fmt.Errorf("KVM_GET_MSRS on vCPU %d: MSR %#x not read: %w", v.id, index, ErrMSRsPartial)
	}
	return buf.entry.Data, nil
}

// SetMSRs writes the given MSRs (KVM_SET_MSRS). It fails with ErrMSRsPartial
// if KVM could not write all of them.
func (v *VCPU) SetMSRs(entries []MSREntry) error {
	if len(entries) == 0 {
		return nil
	}
	buf := msrsBuf(entries)
	r, err := ioctlPtr(v.fd, kvmSetMSRs, unsafe.Pointer(&buf[0]))
	if err != nil {
		return fmt.Errorf("KVM_SET_MSRS on vCPU %d: %w", v.id, err)
	}
	if int(r) < len(entries) {
		return fmt.Errorf("KVM_SET_MSRS on vCPU %d: wrote %d of %d, stopped at MSR %#x: %w",
			v.id, r, len(entries), entries[r].Index, ErrMSRsPartial)
	}
	return nil
}

// SetCPUID2 sets the CPUID leaves the guest sees (KVM_SET_CPUID2).
func (v *VCPU) SetCPUID2(c *CPUID) error {
	buf := encodeCPUID2(c)
	if _, err := ioctlPtr(v.fd, kvmSetCPUID2, unsafe.Pointer(&buf[0])); err != nil {
		return fmt.Errorf("KVM_SET_CPUID2 on vCPU %d (%d entries): %w", v.id, len(c.Entries), err)
	}
	return nil
}

// GetCPUID2 returns the CPUID leaves set on this vCPU (KVM_GET_CPUID2), growing on E2BIG.
func (v *VCPU) GetCPUID2() (*CPUID, error) {
	for n := 64; n <= maxGrowEntries; n *= 2 {
		buf := newCPUID2Buf(n)
		_, err := ioctlPtr(v.fd, kvmGetCPUID2, unsafe.Pointer(&buf[0]))
		if errors.Is(err, unix.E2BIG) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("KVM_GET_CPUID2 on vCPU %d: %w", v.id, err)
		}
		c, err := decodeCPUID2(buf)
		if err != nil {
			return nil, fmt.Errorf("KVM_GET_CPUID2 on vCPU %d: %w", v.id, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("KVM_GET_CPUID2 on vCPU %d: more than %d entries: %w", v.id, maxGrowEntries, unix.E2BIG)
}

// GetLAPIC returns the in-kernel local APIC's register page (KVM_GET_LAPIC).
func (v *VCPU) GetLAPIC() (LAPICState, error) {
	var s LAPICState
	if _, err := ioctlPtr(v.fd, kvmGetLAPIC, unsafe.Pointer(&s)); err != nil {
		return LAPICState{}, fmt.Errorf("KVM_GET_LAPIC on vCPU %d: %w", v.id, err)
	}
	return s, nil
}

// SetLAPIC loads the in-kernel local APIC's register page (KVM_SET_LAPIC).
func (v *VCPU) SetLAPIC(s LAPICState) error {
	if _, err := ioctlPtr(v.fd, kvmSetLAPIC, unsafe.Pointer(&s)); err != nil {
		return fmt.Errorf("KVM_SET_LAPIC on vCPU %d: %w", v.id, err)
	}
	return nil
}

// GetMPState returns the vCPU's multiprocessing state (KVM_GET_MP_STATE).
func (v *VCPU) GetMPState() (MPState, error) {
	var s MPState
	if _, err := ioctlPtr(v.fd, kvmGetMPState, unsafe.Pointer(&s)); err != nil {
		return 0, fmt.Errorf("KVM_GET_MP_STATE on vCPU %d: %w", v.id, err)
	}
	return s, nil
}

// SetMPState sets the vCPU's multiprocessing state (KVM_SET_MP_STATE).
func (v *VCPU) SetMPState(s MPState) error {
	if _, err := ioctlPtr(v.fd, kvmSetMPState, unsafe.Pointer(&s)); err != nil {
		return fmt.Errorf("KVM_SET_MP_STATE %d on vCPU %d: %w", s, v.id, err)
	}
	return nil
}

// GetVCPUEvents returns pending exceptions, interrupts and NMIs (KVM_GET_VCPU_EVENTS).
func (v *VCPU) GetVCPUEvents() (VCPUEvents, error) {
	var e VCPUEvents
	if _, err := ioctlPtr(v.fd, kvmGetVCPUEvents, unsafe.Pointer(&e)); err != nil {
		return VCPUEvents{}, fmt.Errorf("KVM_GET_VCPU_EVENTS on vCPU %d: %w", v.id, err)
	}
	return e, nil
}

// SetVCPUEvents sets pending exceptions, interrupts and NMIs (KVM_SET_VCPU_EVENTS).
func (v *VCPU) SetVCPUEvents(e VCPUEvents) error {
	if _, err := ioctlPtr(v.fd, kvmSetVCPUEvents, unsafe.Pointer(&e)); err != nil {
		return fmt.Errorf("KVM_SET_VCPU_EVENTS on vCPU %d: %w", v.id, err)
	}
	return nil
}

// SetXSAVE loads the x87, SSE and extended (XSAVE) state from b, in the
// standard (non-compacted) XSAVE layout (KVM_SET_XSAVE). KVM reads as many
// bytes as the guest's XSAVE state needs, which may exceed XSAVEMin: b
// must be at least that long (VM.XSAVESize).
func (v *VCPU) SetXSAVE(b []byte) error {
	if len(b) < XSAVEMin {
		return fmt.Errorf("KVM_SET_XSAVE on vCPU %d: %d bytes, want at least %d", v.id, len(b), XSAVEMin)
	}
	if _, err := ioctlPtr(v.fd, kvmSetXSAVE, unsafe.Pointer(&b[0])); err != nil {
		return fmt.Errorf("KVM_SET_XSAVE on vCPU %d: %w", v.id, err)
	}
	return nil
}

// SetXCRs sets extended control registers such as XCR0 (KVM_SET_XCRS).
func (v *VCPU) SetXCRs(x XCRs) error {
	if _, err := ioctlPtr(v.fd, kvmSetXCRs, unsafe.Pointer(&x)); err != nil {
		return fmt.Errorf("KVM_SET_XCRS on vCPU %d: %w", v.id, err)
	}
	return nil
}

// SetDebugRegs sets DR0-DR3, DR6 and DR7 (KVM_SET_DEBUGREGS).
func (v *VCPU) SetDebugRegs(d DebugRegs) error {
	if _, err := ioctlPtr(v.fd, kvmSetDebugRegs, unsafe.Pointer(&d)); err != nil {
		return fmt.Errorf("KVM_SET_DEBUGREGS on vCPU %d: %w", v.id, err)
	}
	return nil
}

// GetTSCKHz returns the guest TSC frequency in kHz (KVM_GET_TSC_KHZ).
func (v *VCPU) GetTSCKHz() (uint32, error) {
	r, err := ioctl(v.fd, kvmGetTSCKHz, 0)
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_TSC_KHZ on vCPU %d: %w", v.id, err)
	}
	return uint32(r), nil
}

// SetTSCKHz sets the guest TSC frequency in kHz (KVM_SET_TSC_KHZ). Without
// TSC scaling (CapTSCControl) only the host frequency is accepted.
func (v *VCPU) SetTSCKHz(khz uint32) error {
	if _, err := ioctl(v.fd, kvmSetTSCKHz, uintptr(khz)); err != nil {
		return fmt.Errorf("KVM_SET_TSC_KHZ %d on vCPU %d: %w", khz, v.id, err)
	}
	return nil
}

// LAPIC register offsets within LAPICState.Regs (Intel SDM vol. 3 table 11-1).
const (
	LAPICRegID    = 0x20
	LAPICRegTPR   = 0x80
	LAPICRegSVR   = 0xf0
	LAPICRegLINT0 = 0x350
	LAPICRegLINT1 = 0x360
)

// Reg returns the 32-bit register at byte offset off, or 0 when off is not a
// 4-byte aligned offset inside the page.
func (s *LAPICState) Reg(off int) uint32 {
	if off < 0 || off%4 != 0 || off+4 > len(s.Regs) {
		return 0
	}
	b := s.Regs[off : off+4]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// SetReg writes the 32-bit register at byte offset off; it ignores offsets
// Reg would reject.
func (s *LAPICState) SetReg(off int, val uint32) {
	if off < 0 || off%4 != 0 || off+4 > len(s.Regs) {
		return
	}
	b := s.Regs[off : off+4]
	b[0], b[1], b[2], b[3] = byte(val), byte(val>>8), byte(val>>16), byte(val>>24)
}

package vmm

import (
	"encoding/binary"
	"fmt"

	"github.com/vmmdev/vmm/layout"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// A vCPU's power-on (RESET) state, as the Intel SDM (vol. 3, table 10-1)
// and AMD's APM ("Processor Initialization State") give it and QEMU's x86
// CPU reset leaves it. Leaving S3 resets every processor; vmm keeps RAM and
// the chipset, so it puts each vCPU there itself (sleep.go).
const (
	resetCR0   = 0x60000010 // CD | NW | ET
	resetDR6   = 0xffff0ff0
	resetDR7   = 0x400
	resetFCW   = 0x37f // x87 control word after FNINIT
	resetMXCSR = 0x1f80
	resetPAT   = 0x0007040600070406
	resetXCR0  = 1 // x87 only
)

// Local APIC register offsets and values after RESET (SDM vol. 3 §11.4.7.1).
const (
	apicRegID      = 0x20
	apicRegVersion = 0x30
	apicRegDFR     = 0xe0
	apicRegSVR     = 0xf0
	apicLVTCMCI    = 0x2f0
	apicLVTTimer   = 0x320
	apicLVTError   = 0x370
	apicLVTMasked  = 1 << 16
	apicResetSVR   = 0xff       // spurious vector 0xFF, APIC software-disabled
	apicResetDFR   = 0xffffffff // flat model
)

// resetSregs is the segment and control register state after RESET: real
// mode at CS F000 (base FFFF0000), IP FFF0; the LAPIC enabled in xAPIC mode
// at its default base, the BSP flag only on the boot CPU.
func resetSregs(bsp bool) kvm.Sregs {
	data := kvm.Segment{Limit: 0xffff, Type: 0x3, Present: 1, S: 1} // read/write, accessed
	s := kvm.Sregs{
		CS:  kvm.Segment{Base: 0xffff0000, Limit: 0xffff, Selector: 0xf000, Type: 0xb, Present: 1, S: 1},
		DS:  data,
		ES:  data,
		FS:  data,
		GS:  data,
		SS:  data,
		TR:  kvm.Segment{Limit: 0xffff, Type: 0xb, Present: 1}, // busy 32-bit TSS
		LDT: kvm.Segment{Limit: 0xffff, Type: 0x2, Present: 1},
		GDT: kvm.DTable{Limit: 0xffff},
		IDT: kvm.DTable{Limit: 0xffff},
		CR0: resetCR0,
	}
	s.APICBase = layout.LAPICBase | apicBaseEnable
	if bsp {
		s.APICBase |= apicBaseBSP
	}
	return s
}

// resetRegs: RIP FFF0, RFLAGS bit 1, EDX the processor signature
// (CPUID 1 EAX), everything else zero.
func resetRegs(signature uint32) kvm.Regs {
	return kvm.Regs{RIP: 0xfff0, RFLAGS: 2, RDX: uint64(signature)}
}

// resetLAPIC is the local APIC register page after RESET for APIC ID id:
// the xAPIC ID in bits 31:24 (an APIC left in x2APIC mode holds it in bits
// 31:0, which in xAPIC mode reads as ID 0, and no IPI for the real ID
// reaches it), every LVT masked, the APIC software-disabled, nothing in
// service or pending, the timer stopped. version is kept as KVM reports it.
// The local interrupt pins then get the PC wiring (lintModes), and the boot
// CPU's LINT0 is unmasked as KVM's own reset leaves it.
func resetLAPIC(id int, version uint32, bsp bool) kvm.LAPICState {
	var st kvm.LAPICState
	st.SetReg(apicRegID, uint32(id)<<24)
	st.SetReg(apicRegVersion, version)
	st.SetReg(apicRegDFR, apicResetDFR)
	st.SetReg(apicRegSVR, apicResetSVR)
	st.SetReg(apicLVTCMCI, apicLVTMasked)
	for off := apicLVTTimer; off <= apicLVTError; off += 0x10 {
		st.SetReg(off, apicLVTMasked)
	}
	if bsp {
		st.SetReg(apicLVTLINT0, 0)
	}
	lintModes(&st)
	return st
}

// resetXSAVE is the x87/SSE/extended state after RESET in KVM's XSAVE
// layout, size bytes: FCW 037F, MXCSR 1F80, every register zero. The
// header's XSTATE_BV names x87 and SSE (loaded from the legacy area as
// written here); every other component is in its initial state.
func resetXSAVE(size int) []byte {
	b := make([]byte, max(size, kvm.XSAVEMin))
	binary.LittleEndian.PutUint16(b[0:], resetFCW)
	binary.LittleEndian.PutUint32(b[24:], resetMXCSR)
	binary.LittleEndian.PutUint64(b[512:], 0b11) // XSTATE_BV: x87 | SSE
	return b
}

// resetMSRs are the MSRs a processor's reset returns to a fixed value that
// KVM lets userspace write: the system-call and SYSENTER targets, PAT, and
// KVM's paravirtual MSRs. The paravirtual ones matter most: while enabled,
// KVM writes the vCPU's kvmclock, steal time and PV EOI areas in guest
// memory the OS may have reused after the resume. (MSR_KVM_WALL_CLOCK is
// left out: writing it makes KVM write the wall clock at that address.)
var resetMSRs = []kvm.MSREntry{
	{Index: 0x174}, {Index: 0x175}, {Index: 0x176}, // SYSENTER_CS/ESP/EIP
	{Index: 0x277, Data: resetPAT},
	{Index: 0xc0000081}, {Index: 0xc0000082}, {Index: 0xc0000083}, {Index: 0xc0000084}, // STAR, LSTAR, CSTAR, SFMASK
	{Index: 0xc0000102}, // KERNEL_GS_BASE
	{Index: 0xc0000103}, // TSC_AUX
	{Index: 0x12},       // MSR_KVM_SYSTEM_TIME (legacy kvmclock)
	{Index: 0x4b564d01}, // MSR_KVM_SYSTEM_TIME_NEW
	{Index: 0x4b564d02}, // MSR_KVM_ASYNC_PF_EN
	{Index: 0x4b564d03}, // MSR_KVM_STEAL_TIME
	{Index: 0x4b564d04}, // MSR_KVM_PV_EOI_EN
	{Index: 0x4b564d06}, // MSR_KVM_ASYNC_PF_INT
}

// msrWrites picks from have (the current values of resetMSRs that KVM
// could read) those not at their reset value. An MSR KVM cannot read on
// this host is absent from have and stays untouched; one the guest could
// change can be written back.
func msrWrites(have []kvm.MSREntry) []kvm.MSREntry {
	var out []kvm.MSREntry
	for _, h := range have {
		for _, r := range resetMSRs {
			if r.Index == h.Index && r.Data != h.Data {
				out = append(out, r)
			}
		}
	}
	return out
}

// clearEvents drops every exception, interrupt, NMI, SMI and latched INIT
// pending or being injected: nothing from before the reset may be
// delivered after it.
func clearEvents(v *kvm.VCPU) error {
	ev, err := v.GetVCPUEvents()
	if err != nil {
		return err
	}
	flags := ev.Flags & (kvm.VCPUEventValidPayload | kvm.VCPUEventValidTripleFault)
	ev = kvm.VCPUEvents{Flags: flags | kvm.VCPUEventValidNMIPending | kvm.VCPUEventValidSIPIVector |
		kvm.VCPUEventValidShadow | kvm.VCPUEventValidSMM}
	return v.SetVCPUEvents(ev)
}

// resetArch puts what a reset clears besides the general, segment and
// control registers and the LAPIC: x87/SSE/AVX state, XCR0, the debug
// registers and resetMSRs. The TSC is left running: every vCPU keeps the
// same offset from the host's, so the TSCs stay in step and kvmclock (which
// the OS registers again on each CPU) consistent.
func (m *Machine) resetArch(v *kvm.VCPU) error {
	if err := v.SetXSAVE(resetXSAVE(m.vm.XSAVESize())); err != nil {
		return err
	}
	if n, err := m.vm.CheckExtension(kvm.CapXCRs); err == nil && n > 0 {
		x := kvm.XCRs{NrXCRs: 1}
		x.XCRs[0] = kvm.XCR{XCR: 0, Value: resetXCR0}
		if err := v.SetXCRs(x); err != nil {
			return err
		}
	}
	if err := v.SetDebugRegs(kvm.DebugRegs{DR6: resetDR6, DR7: resetDR7}); err != nil {
		return err
	}
	var have []kvm.MSREntry
	for _, r := range resetMSRs {
		if e, err := v.GetMSRs([]uint32{r.Index}); err == nil {
			have = append(have, e...)
		}
	}
	return v.SetMSRs(msrWrites(have))
}

// resetAP puts application processor v (APIC ID id) in its power-on state
// with the PC's LINT wiring, waiting for INIT (KVM_MP_STATE_UNINITIALIZED,
// as KVM creates APs and QEMU resets them): the OS's INIT-SIPI-SIPI
// starts it at the SIPI vector as after a real reset.
func (m *Machine) resetAP(v *kvm.VCPU, id int) error {
	sig, err := signature(v)
	if err != nil {
		return err
	}
	old, err := v.GetLAPIC()
	if err != nil {
		return err
	}
	// Segment and control registers first: they put the APIC base back in
	// xAPIC mode, the mode the register page below is written for.
	if err := v.SetSregs(resetSregs(false)); err != nil {
		return err
	}
	if err := v.SetRegs(resetRegs(sig)); err != nil {
		return err
	}
	if err := m.resetArch(v); err != nil {
		return err
	}
	if err := v.SetLAPIC(resetLAPIC(id, old.Reg(apicRegVersion), false)); err != nil {
		return err
	}
	if err := clearEvents(v); err != nil {
		return err
	}
	if err := v.SetMPState(kvm.MPStateUninitialized); err != nil {
		return fmt.Errorf("wait for INIT: %w", err)
	}
	return nil
}

// signature is the vCPU's CPUID 1 EAX (family, model, stepping), which a
// reset leaves in EDX.
func signature(v *kvm.VCPU) (uint32, error) {
	cpuid, err := v.GetCPUID2()
	if err != nil {
		return 0, err
	}
	if e := cpuid.Get(1, 0); e != nil {
		return e.EAX, nil
	}
	return 0, nil
}

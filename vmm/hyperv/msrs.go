package hyperv

import "fmt"

// Synthetic MSRs (TLFS; Linux hvgdk_mini.h).
const (
	MSRGuestOSID     = 0x40000000
	MSRHypercall     = 0x40000001
	MSRVPIndex       = 0x40000002
	MSRReset         = 0x40000003
	MSRVPRuntime     = 0x40000010
	MSRTimeRefCount  = 0x40000020
	MSRReferenceTSC  = 0x40000021
	MSRTSCFrequency  = 0x40000022
	MSRAPICFrequency = 0x40000023
	MSREOI           = 0x40000070
	MSRICR           = 0x40000071
	MSRTPR           = 0x40000072
	MSRVPAssistPage  = 0x40000073
	MSRSControl      = 0x40000080
	MSRSVersion      = 0x40000081
	MSRSIEFP         = 0x40000082
	MSRSIMP          = 0x40000083
	MSREOM           = 0x40000084
	MSRSINT0         = 0x40000090
	MSRSINT15        = 0x4000009F
	MSRSTimer0Config = 0x400000B0
	MSRSTimer3Count  = 0x400000B7
	MSRCrashP0       = 0x40000100
	MSRCrashP4       = 0x40000104
	MSRCrashCtl      = 0x40000105
)

// FilterBase and FilterCount are the MSR range the VMM's MSR filter must
// deny so that synthetic MSR accesses exit to userspace (FilterBitmap).
const (
	FilterBase  = 0x40000000
	FilterCount = 0x200
)

// KernelMSRs are the synthetic MSRs that KVM itself must serve for f: with
// vapic, EOI, ICR and TPR. They act on the local APIC, which is KVM's
// in-kernel one, and userspace has no exact way to do the same: an
// x2APIC-mode guest's write could be replayed as a KVM_SET_MSRS of the
// x2APIC register, but an xAPIC-mode guest (Linux under Hyper-V without
// interrupt remapping) has no such door, and KVM_GET/SET_LAPIC rewrites the
// whole register page, losing interrupts that other threads raise in
// between, and skips the EOI broadcast that level-triggered IOAPIC
// interrupts need. KVM's Hyper-V code (hyperv.c kvm_hv_vapic_msr_write)
// does exactly the APIC register write for any APIC mode; it takes these
// MSRs once the guest's CPUID says Hv#1, which ours does, and QEMU's
// hv-vapic relies on the same code. VP_ASSIST_PAGE stays here: only its
// apic_assist field concerns the LAPIC, and vmm leaves that clear.
//
// With kernel-timers, the timer MSRs are KVM's too, and with them the
// clock KVM's timers count against (TIME_REF_COUNT and REFERENCE_TSC, when
// offered): a clock of vmm's would disagree with KVM's. The SynIC MSRs stay
// here, mirrored to KVM's SynIC (kernel.go).
func (f Features) KernelMSRs() []uint32 {
	if !f.on {
		return nil
	}
	var out []uint32
	if f.VAPIC {
		out = append(out, MSREOI, MSRICR, MSRTPR)
	}
	if f.Kernel() {
		if f.Time {
			out = append(out, MSRTimeRefCount)
		}
		if f.TSCPage() {
			out = append(out, MSRReferenceTSC)
		}
		for m := uint32(MSRSTimer0Config); m <= MSRSTimer3Count; m++ {
			out = append(out, m)
		}
	}
	return out
}

// FilterBitmap is the MSR filter's bitmap over FilterBase..+FilterCount:
// a clear bit denies the MSR to KVM (the access exits to userspace), a set
// bit leaves it to KVM (KernelMSRs).
func (f Features) FilterBitmap() []byte {
	b := make([]byte, FilterCount/8)
	for _, m := range f.KernelMSRs() {
		i := m - FilterBase
		b[i/8] |= 1 << (i % 8)
	}
	return b
}

// msrName names a synthetic MSR for traces and summaries.
func msrName(msr uint32) string {
	switch msr {
	case MSRGuestOSID:
		return "GUEST_OS_ID"
	case MSRHypercall:
		return "HYPERCALL"
	case MSRVPIndex:
		return "VP_INDEX"
	case MSRReset:
		return "RESET"
	case MSRVPRuntime:
		return "VP_RUNTIME"
	case MSRTimeRefCount:
		return "TIME_REF_COUNT"
	case MSRReferenceTSC:
		return "REFERENCE_TSC"
	case MSRTSCFrequency:
		return "TSC_FREQUENCY"
	case MSRAPICFrequency:
		return "APIC_FREQUENCY"
	case MSREOI:
		return "EOI"
	case MSRICR:
		return "ICR"
	case MSRTPR:
		return "TPR"
	case MSRVPAssistPage:
		return "VP_ASSIST_PAGE"
	case MSRSControl:
		return "SCONTROL"
	case MSRSVersion:
		return "SVERSION"
	case MSRSIEFP:
		return "SIEFP"
	case MSRSIMP:
		return "SIMP"
	case MSREOM:
		return "EOM"
	case MSRCrashCtl:
		return "CRASH_CTL"
	}
	// Constant names: the summary counts every access by name, and guests
	// write the SynIC and timer MSRs at every tick.
	switch {
	case msr >= MSRSINT0 && msr <= MSRSINT15:
		return [...]string{"SINT0", "SINT1", "SINT2", "SINT3", "SINT4", "SINT5", "SINT6", "SINT7",
			"SINT8", "SINT9", "SINT10", "SINT11", "SINT12", "SINT13", "SINT14", "SINT15"}[msr-MSRSINT0]
	case msr >= MSRSTimer0Config && msr <= MSRSTimer3Count:
		return [...]string{"STIMER0_CONFIG", "STIMER0_COUNT", "STIMER1_CONFIG", "STIMER1_COUNT",
			"STIMER2_CONFIG", "STIMER2_COUNT", "STIMER3_CONFIG", "STIMER3_COUNT"}[msr-MSRSTimer0Config]
	case msr >= MSRCrashP0 && msr <= MSRCrashP4:
		return [...]string{"CRASH_P0", "CRASH_P1", "CRASH_P2", "CRASH_P3", "CRASH_P4"}[msr-MSRCrashP0]
	}
	return fmt.Sprintf("%#x", msr)
}

// MSR bit fields.
const (
	hypercallEnable = 1 << 0
	hypercallLocked = 1 << 1
	pageEnable      = 1 << 0 // SIMP, SIEFP, REFERENCE_TSC
	pageMask        = ^uint64(0xfff)
	crashNotify     = 1 << 63
	sintMasked      = 1 << 16
	sintAutoEOI     = 1 << 17
	sintPolling     = 1 << 18
	sintVectorMask  = 0xff
	sintValidBits   = sintVectorMask | sintMasked | sintAutoEOI | sintPolling
	sintFirstVector = 16
	synicVersion    = 1
	// apicFrequency is the in-kernel LAPIC timer's rate: KVM's APIC bus
	// runs at 1 GHz.
	apicFrequency = 1_000_000_000
)

package hyperv

import (
	"encoding/binary"

	"github.com/vmmdev/vmm/vmm/kvm"
)

// CPUID leaves (TLFS "Feature Discovery").
const (
	LeafVendor     = 0x40000000
	LeafInterface  = 0x40000001
	LeafVersion    = 0x40000002
	LeafFeatures   = 0x40000003
	LeafHints      = 0x40000004
	LeafLimits     = 0x40000005
	LeafHWFeatures = 0x40000006
	// LeafKVMBase is where KVM's own leaves move when the KVM signature is
	// kept next to Hyper-V's (as QEMU does).
	LeafKVMBase = 0x40000100
)

// CPUID 0x40000003 EAX: partition privileges (TLFS; Linux hyperv-tlfs.h).
const (
	privVPRuntime    = 1 << 0
	privTimeRefCount = 1 << 1
	privSynIC        = 1 << 2
	privSynTimers    = 1 << 3
	privAPICAccess   = 1 << 4 // EOI, ICR, TPR and VP_ASSIST_PAGE MSRs
	privHypercall    = 1 << 5
	privVPIndex      = 1 << 6
	privReset        = 1 << 7
	privRefTSC       = 1 << 9
	privFrequencies  = 1 << 11
)

// CPUID 0x40000003 EBX: partition privileges, high half.
const (
	privPostMessages = 1 << 4
	privSignalEvents = 1 << 5
)

// CPUID 0x40000003 EDX: miscellaneous features.
const (
	miscFrequencies  = 1 << 8
	miscCrashMSRs    = 1 << 10
	miscSTimerDirect = 1 << 19
)

// CPUID 0x40000004 EAX: implementation recommendations.
const (
	hintRemoteTLBFlush  = 1 << 2
	hintAPICAccess      = 1 << 3 // use the APIC access MSRs for EOI, ICR, TPR
	hintRelaxedTiming   = 1 << 5
	hintDeprecatingAEOI = 1 << 9
	hintClusterIPI      = 1 << 10
	hintExProcessorMask = 1 << 11
)

// Version reported in 0x40000002: Windows Server 2016's, as QEMU's default.
const (
	versionBuild    = 0x3839
	versionMajorMin = 0x000A0000
)

// hvInterface is "Hv#1" in 0x40000001 EAX.
const hvInterface = 0x31237648

// DefaultVendor is the CPUID 0x40000000 vendor signature.
const DefaultVendor = "Microsoft Hv"

// vendorRegs packs a 12-byte signature into EBX, ECX, EDX.
func vendorRegs(s string) (ebx, ecx, edx uint32) {
	var b [12]byte
	copy(b[:], s)
	le := binary.LittleEndian
	return le.Uint32(b[0:]), le.Uint32(b[4:]), le.Uint32(b[8:])
}

// privileges returns CPUID 0x40000003 EAX, EBX and EDX for f.
func (f Features) privileges() (eax, ebx, edx uint32) {
	eax = privHypercall
	set := func(on bool, bit uint32, reg *uint32) {
		if on {
			*reg |= bit
		}
	}
	set(f.Runtime, privVPRuntime, &eax)
	set(f.Time, privTimeRefCount, &eax)
	set(f.TSCPage(), privRefTSC, &eax)
	set(f.SynIC, privSynIC, &eax)
	set(f.STimer, privSynTimers, &eax)
	// Windows takes the reference TSC page only from a partition that
	// also has the hypercall (bit 5, always set) and VP index (bit 6)
	// MSRs, so the TSC page brings the VP index with it.
	set(f.VPIndex || f.TSCPage(), privVPIndex, &eax)
	set(f.VAPIC, privAPICAccess, &eax)
	set(f.Reset, privReset, &eax)
	set(f.Frequencies, privFrequencies, &eax)
	set(f.SynIC, privPostMessages|privSignalEvents, &ebx)
	set(f.Frequencies, miscFrequencies, &edx)
	set(f.Crash, miscCrashMSRs, &edx)
	set(f.STimerDirect, miscSTimerDirect, &edx)
	return eax, ebx, edx
}

// hints returns CPUID 0x40000004 EAX. Deprecating AEOI is always advised:
// auto-EOI lives inside KVM's LAPIC, which userspace cannot reach cheaply.
func (f Features) hints() uint32 {
	h := uint32(hintDeprecatingAEOI)
	if f.Relaxed {
		h |= hintRelaxedTiming
	}
	// QEMU's hv-vapic recommends the MSRs (Linux: "Using enlightened APIC").
	if f.VAPIC {
		h |= hintAPICAccess
	}
	if f.TLBFlush {
		h |= hintRemoteTLBFlush | hintExProcessorMask
	}
	if f.IPI {
		h |= hintClusterIPI | hintExProcessorMask
	}
	return h
}

// Leaves returns the Hyper-V CPUID leaves 0x40000000-0x40000006 for a VM of
// ncpus vCPUs, advertising exactly the enabled switches; nil when off. The
// last leaf stays below 0x4000000A: that one describes nested
// virtualization (eVMCS), which vmm does not offer, and advertising it has
// broken Windows 11 boots on another VMM.
func (f Features) Leaves(ncpus int) []kvm.CPUIDEntry {
	if !f.on {
		return nil
	}
	vendor := f.VendorID
	if vendor == "" {
		vendor = DefaultVendor
	}
	ebx, ecx, edx := vendorRegs(vendor)
	pa, pb, pd := f.privileges()
	spin := f.Spinlocks
	if spin == 0 {
		spin = DefaultSpinlocks
	}
	return []kvm.CPUIDEntry{
		{Function: LeafVendor, EAX: LeafHWFeatures, EBX: ebx, ECX: ecx, EDX: edx},
		{Function: LeafInterface, EAX: hvInterface},
		{Function: LeafVersion, EAX: versionBuild, EBX: versionMajorMin},
		{Function: LeafFeatures, EAX: pa, EBX: pb, EDX: pd},
		{Function: LeafHints, EAX: f.hints(), EBX: spin},
		{Function: LeafLimits, EAX: uint32(ncpus), EBX: uint32(ncpus)},
		{Function: LeafHWFeatures},
	}
}

// ApplyCPUID puts f's leaves into c. KVM's signature leaves at 0x40000000
// and 0x40000001 are replaced; with KVMSignature they move to 0x40000100
// and 0x40000101 (0x40000100 EAX then names its own last leaf).
func (f Features) ApplyCPUID(c *kvm.CPUID, ncpus int) {
	if !f.on {
		return
	}
	var kvmLeaves []kvm.CPUIDEntry
	kept := c.Entries[:0]
	for _, e := range c.Entries {
		if e.Function >= LeafVendor && e.Function < LeafVendor+0x100 {
			if e.Function == LeafVendor || e.Function == LeafInterface {
				kvmLeaves = append(kvmLeaves, e)
			}
			continue
		}
		kept = append(kept, e)
	}
	c.Entries = kept
	c.Entries = append(c.Entries, f.Leaves(ncpus)...)
	if f.KVMSignature {
		for _, e := range kvmLeaves {
			e.Function += LeafKVMBase - LeafVendor
			if e.Function == LeafKVMBase {
				e.EAX = LeafKVMBase + 1
			}
			c.Entries = append(c.Entries, e)
		}
	}
}

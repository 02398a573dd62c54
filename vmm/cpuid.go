package vmm

import (
	"math/bits"

	"github.com/vmmdev/vmm/vmm/kvm"
)

// CPUID leaves and bits the VMM adjusts.
const (
	cpuidFeatures      = 0x1
	cpuidCacheParams   = 0x4
	cpuidTopology      = 0xb
	cpuidTopologyV2    = 0x1f
	cpuidAMDSizes      = 0x80000008
	cpuidAMDTopology   = 0x8000001e
	featureHTT         = 1 << 28 // leaf 1 EDX
	featureHypervisor  = 1 << 31 // leaf 1 ECX
	featureTSCDeadline = 1 << 24 // leaf 1 ECX
	topologyLevelSMT   = 1
	topologyLevelCore  = 2
	cpuidKVMSignature  = 0x40000000
	kvmSignatureEBX    = 0x4b4d564b // "KVMK"
	kvmSignatureECX    = 0x564b4d56 // "VMKV"
	kvmSignatureEDX    = 0x0000004d // "M\0\0\0"
	cpuidKVMFeatures   = 0x40000001
	leafSignificantIdx = 1 // KVM_CPUID_FLAG_SIGNIFICANT_INDEX
)

// cpuidOptions are host facts that change the CPUID table.
type cpuidOptions struct {
	// tscDeadline: the in-kernel LAPIC emulates the TSC-deadline timer
	// (KVM_CAP_TSC_DEADLINE_TIMER). KVM_GET_SUPPORTED_CPUID never reports it,
	// because it depends on userspace creating the irqchip.
	tscDeadline bool
}

// vcpuCPUID derives vCPU id's CPUID table from what KVM supports: one socket
// of ncpus cores with one thread each, APIC ID = vCPU index, the hypervisor
// bit set and KVM's paravirtual leaves (kvmclock) kept so Linux takes its TSC
// frequency from kvmclock instead of calibrating.
func vcpuCPUID(supported *kvm.CPUID, id, ncpus int, opt cpuidOptions) *kvm.CPUID {
	out := &kvm.CPUID{Entries: make([]kvm.CPUIDEntry, 0, len(supported.Entries))}
	coreBits := uint32(bits.Len(uint(ncpus - 1))) // bits of the APIC ID that number cores
	apicID := uint32(id)
	for _, e := range supported.Entries {
		switch e.Function {
		case cpuidFeatures:
			e.EBX = e.EBX&0x0000ffff | apicID<<24 | uint32(min(ncpus, 255))<<16
			e.ECX |= featureHypervisor
			if opt.tscDeadline {
				e.ECX |= featureTSCDeadline
			}
			if ncpus > 1 {
				e.EDX |= featureHTT
			} else {
				e.EDX &^= featureHTT
			}
		case cpuidCacheParams:
			// EAX[31:26]: cores per package - 1; EAX[25:14]: threads sharing this cache - 1 (one thread per core).
			if e.EAX&0x1f != 0 {
				e.EAX = e.EAX&0x03ffc3ff | uint32(min(ncpus-1, 63))<<26
			}
		case cpuidTopology, cpuidTopologyV2:
			e.EDX = apicID
			switch e.Index {
			case 0: // SMT level: one thread per core.
				e.EAX, e.EBX, e.ECX = 0, 1, topologyLevelSMT<<8
			case 1: // core level: all vCPUs in one package.
				e.EAX, e.EBX, e.ECX = coreBits, uint32(ncpus), topologyLevelCore<<8|1
			default:
				e.EAX, e.EBX, e.ECX = 0, 0, e.Index
			}
		case cpuidAMDSizes:
			// ECX[7:0]: cores per package - 1; ECX[15:12]: APIC ID bits for cores.
			e.ECX = e.ECX&^0xf0ff | uint32(min(ncpus-1, 255)) | coreBits<<12
		case cpuidAMDTopology:
			// EAX: extended APIC ID; EBX: core id, one thread per core; ECX: node 0.
			e.EAX = apicID
			e.EBX = apicID & 0xff
			e.ECX = 0
		}
		out.Entries = append(out.Entries, e)
	}
	ensureKVMLeaves(out, supported)
	return out
}

// ensureKVMLeaves makes sure the KVM signature leaf is present: some hosts
// (PVM) report their own paravirtual leaves; Linux looks for "KVMKVMKVM".
func ensureKVMLeaves(c *kvm.CPUID, supported *kvm.CPUID) {
	if sig := c.Get(cpuidKVMSignature, 0); sig != nil && sig.EBX == kvmSignatureEBX {
		return
	}
	c.Set(kvm.CPUIDEntry{Function: cpuidKVMSignature, EAX: cpuidKVMFeatures,
		EBX: kvmSignatureEBX, ECX: kvmSignatureECX, EDX: kvmSignatureEDX})
	if c.Get(cpuidKVMFeatures, 0) == nil {
		var feat kvm.CPUIDEntry
		if f := supported.Get(cpuidKVMFeatures, 0); f != nil {
			feat = *f
		}
		feat.Function = cpuidKVMFeatures
		c.Set(feat)
	}
}

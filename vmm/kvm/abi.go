package kvm

// ABI structs passed to the kernel. Each mirrors a C struct from
// include/uapi/linux/kvm.h or arch/x86/include/uapi/asm/kvm.h field for
// field; layout_test.go pins their sizes and offsets.

// UserspaceMemoryRegion is struct kvm_userspace_memory_region.
type UserspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32 // MemLogDirtyPages, MemReadonly
	GuestPhysAddr uint64
	MemorySize    uint64 // bytes; 0 deletes the slot
	UserspaceAddr uint64
}

// Memory region flags (KVM_MEM_*).
const (
	MemLogDirtyPages uint32 = 1 << 0
	MemReadonly      uint32 = 1 << 1
)

// IOEventFD is struct kvm_ioeventfd: a guest write to Addr (of Len bytes,
// matching Datamatch if IOEventFDDatamatch is set) signals FD instead of exiting.
type IOEventFD struct {
	Datamatch uint64
	Addr      uint64
	Len       uint32 // 1, 2, 4 or 8; 0 matches any length
	FD        int32
	Flags     uint32
	_         [36]uint8
}

// IOEventFD flags (KVM_IOEVENTFD_FLAG_*).
const (
	IOEventFDDatamatch uint32 = 1 << 0
	IOEventFDPIO       uint32 = 1 << 1
	IOEventFDDeassign  uint32 = 1 << 2
)

// IRQFD flags (KVM_IRQFD_FLAG_*).
const (
	IRQFDDeassign uint32 = 1 << 0
)

// PIT flags (struct kvm_pit_config.flags).
const (
	// PITSpeakerDummy makes KVM emulate a dummy PC speaker port (0x61).
	PITSpeakerDummy uint32 = 1
)

// kvmIRQFDArg is struct kvm_irqfd.
type kvmIRQFDArg struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

// kvmPITConfig is struct kvm_pit_config.
type kvmPITConfig struct {
	Flags uint32
	_     [15]uint32
}

// kvmIRQLevel is struct kvm_irq_level.
type kvmIRQLevel struct {
	IRQ   uint32
	Level uint32
}

// kvmMSI is struct kvm_msi.
type kvmMSI struct {
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	Flags     uint32
	DevID     uint32
	_         [12]uint8
}

// kvmEnableCapArg is struct kvm_enable_cap.
type kvmEnableCapArg struct {
	Cap   uint32
	Flags uint32
	Args  [4]uint64
	_     [64]uint8
}

// kvmClockData is struct kvm_clock_data.
type kvmClockData struct {
	Clock    uint64
	Flags    uint32
	_        uint32
	Realtime uint64
	HostTSC  uint64
	_        [4]uint32
}

// kvmMSRList is the fixed head of struct kvm_msr_list (nmsrs; indices[] follow).
type kvmMSRList struct {
	NMSRs uint32
}

// kvmCPUID2 is the fixed head of struct kvm_cpuid2 (nent, padding; entries[] follow).
type kvmCPUID2 struct {
	NEnt uint32
	_    uint32
}

// kvmMSRsHeader is the fixed head of struct kvm_msrs (nmsrs, pad; entries[] follow).
type kvmMSRsHeader struct {
	NMSRs uint32
	_     uint32
}

// kvmMSRFilterRange is struct kvm_msr_filter_range.
type kvmMSRFilterRange struct {
	Flags  uint32
	NMSRs  uint32
	Base   uint32
	Bitmap *byte
}

// kvmMSRFilter is struct kvm_msr_filter.
type kvmMSRFilter struct {
	Flags  uint32
	Ranges [msrFilterMaxRanges]kvmMSRFilterRange
}

// LAPICState is struct kvm_lapic_state: the 1 KiB local APIC register page.
type LAPICState struct {
	Regs [1024]byte
}

// MPState is struct kvm_mp_state (a single __u32).
type MPState uint32

// MP states (KVM_MP_STATE_*).
const (
	MPStateRunnable      MPState = 0
	MPStateUninitialized MPState = 1
	MPStateInitReceived  MPState = 2
	MPStateHalted        MPState = 3
	MPStateSIPIReceived  MPState = 4
)

// VCPUEvents is struct kvm_vcpu_events (64 bytes): pending exceptions,
// interrupts, NMIs and SMIs, for save/restore and injection.
type VCPUEvents struct {
	Exception struct {
		Injected     uint8
		Nr           uint8
		HasErrorCode uint8
		Pending      uint8
		ErrorCode    uint32
	}
	Interrupt struct {
		Injected uint8
		Nr       uint8
		Soft     uint8
		Shadow   uint8
	}
	NMI struct {
		Injected uint8
		Pending  uint8
		Masked   uint8
		_        uint8
	}
	SIPIVector uint32
	Flags      uint32 // VCPUEventValid*
	SMI        struct {
		SMM          uint8
		Pending      uint8
		SMMInsideNMI uint8
		LatchedInit  uint8
	}
	TripleFault struct {
		Pending uint8
	}
	_                   [26]uint8
	ExceptionHasPayload uint8
	ExceptionPayload    uint64
}

// VCPUEvents.Flags bits (KVM_VCPUEVENT_VALID_*).
const (
	VCPUEventValidNMIPending  uint32 = 0x01
	VCPUEventValidSIPIVector  uint32 = 0x02
	VCPUEventValidShadow      uint32 = 0x04
	VCPUEventValidSMM         uint32 = 0x08
	VCPUEventValidPayload     uint32 = 0x10
	VCPUEventValidTripleFault uint32 = 0x20
)

// XSAVEMin is the size of struct kvm_xsave (its fixed region). KVM reads
// and writes more where the guest's XSAVE state is larger (CapXSave2
// reports that size), so a buffer for KVM_SET_XSAVE must be
// max(XSAVEMin, that) bytes.
const XSAVEMin = 4096

// kvmXSAVE is the fixed part of struct kvm_xsave (region[1024]).
type kvmXSAVE struct {
	Region [XSAVEMin / 4]uint32
}

// XCR is struct kvm_xcr.
type XCR struct {
	XCR   uint32
	_     uint32
	Value uint64
}

// XCRs is struct kvm_xcrs: up to 16 extended control registers.
type XCRs struct {
	NrXCRs uint32
	Flags  uint32
	XCRs   [16]XCR
	_      [16]uint64
}

// DebugRegs is struct kvm_debugregs.
type DebugRegs struct {
	DB    [4]uint64
	DR6   uint64
	DR7   uint64
	Flags uint64
	_     [9]uint64
}

// MSREntry is struct kvm_msr_entry.
type MSREntry struct {
	Index uint32
	_     uint32
	Data  uint64
}

// kvmDeviceAttr is struct kvm_device_attr; Addr points at the attribute's value.
type kvmDeviceAttr struct {
	Flags uint32
	Group uint32
	Attr  uint64
	Addr  uint64
}

// kvmIRQRoutingHeader is the fixed head of struct kvm_irq_routing (nr, flags; entries[] follow).
type kvmIRQRoutingHeader struct {
	NR    uint32
	Flags uint32
}

// kvmIRQRoutingEntry is struct kvm_irq_routing_entry; U is the 32-byte union
// (irqchip: chip, pin; msi: address_lo, address_hi, data, devid).
type kvmIRQRoutingEntry struct {
	GSI   uint32
	Type  uint32
	Flags uint32
	_     uint32
	U     [8]uint32
}

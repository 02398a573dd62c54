package kvm

import "strconv"

// Cap is a KVM capability number for KVM_CHECK_EXTENSION and KVM_ENABLE_CAP
// (KVM_CAP_* in include/uapi/linux/kvm.h).
type Cap int

// Capabilities relevant to an x86 VMM; values are the kernel's.
const (
	CapIRQChip                Cap = 0
	CapHLT                    Cap = 1
	CapUserMemory             Cap = 3
	CapSetTSSAddr             Cap = 4
	CapExtCPUID               Cap = 7
	CapClocksource            Cap = 8
	CapNrVCPUs                Cap = 9
	CapNrMemslots             Cap = 10
	CapPIT                    Cap = 11
	CapMPState                Cap = 14
	CapCoalescedMMIO          Cap = 15
	CapSyncMMU                Cap = 16
	CapUserNMI                Cap = 22
	CapSetGuestDebug          Cap = 23
	CapIRQRouting             Cap = 25
	CapMCE                    Cap = 31
	CapIRQFD                  Cap = 32
	CapPIT2                   Cap = 33
	CapPITState2              Cap = 35
	CapIOEventFD              Cap = 36
	CapSetIdentityMapAddr     Cap = 37
	CapAdjustClock            Cap = 39
	CapInternalErrorData      Cap = 40
	CapVCPUEvents             Cap = 41
	CapHyperV                 Cap = 44
	CapHyperVVAPIC            Cap = 45
	CapHyperVSpin             Cap = 46
	CapDebugRegs              Cap = 50
	CapEnableCap              Cap = 54
	CapXSave                  Cap = 55
	CapXCRs                   Cap = 56
	CapAsyncPF                Cap = 59
	CapTSCControl             Cap = 60
	CapGetTSCKHz              Cap = 61
	CapMaxVCPUs               Cap = 66
	CapOneReg                 Cap = 70
	CapTSCDeadlineTimer       Cap = 72
	CapSyncRegs               Cap = 74
	CapKVMClockCtrl           Cap = 76
	CapSignalMSI              Cap = 77
	CapReadonlyMem            Cap = 81
	CapIRQFDResample          Cap = 82
	CapDeviceCtrl             Cap = 89
	CapExtEmulCPUID           Cap = 95
	CapHyperVTime             Cap = 96
	CapEnableCapVM            Cap = 98
	CapIOEventFDNoLength      Cap = 100
	CapVMAttributes           Cap = 101
	CapCheckExtensionVM       Cap = 105
	CapDisableQuirks          Cap = 116
	CapX86SMM                 Cap = 117
	CapSplitIRQChip           Cap = 121
	CapIOEventFDAnyLength     Cap = 122
	CapHyperVSynIC            Cap = 123
	CapVCPUAttributes         Cap = 127
	CapMaxVCPUID              Cap = 128
	CapX2APICAPI              Cap = 129
	CapImmediateExit          Cap = 136
	CapX86DisableExits        Cap = 143
	CapHyperVSynIC2           Cap = 148
	CapHyperVVPIndex          Cap = 149
	CapGetMSRFeatures         Cap = 153
	CapHyperVEventFD          Cap = 154
	CapHyperVTLBFlush         Cap = 155
	CapNestedState            Cap = 157
	CapMSRPlatformInfo        Cap = 159
	CapHyperVSendIPI          Cap = 161
	CapCoalescedPIO           Cap = 162
	CapExceptionPayload       Cap = 164
	CapHyperVCPUID            Cap = 167
	CapPMUEventFilter         Cap = 173
	CapHyperVDirectTLBFlush   Cap = 175
	CapHaltPoll               Cap = 182
	CapAsyncPFInt             Cap = 183
	CapStealTime              Cap = 187
	CapX86UserSpaceMSR        Cap = 188
	CapX86MSRFilter           Cap = 189
	CapEnforcePVFeatureCPUID  Cap = 190
	CapSysHyperVCPUID         Cap = 191
	CapDirtyLogRing           Cap = 192
	CapX86BusLockExit         Cap = 193
	CapHyperVEnforceCPUID     Cap = 199
	CapSregs2                 Cap = 200
	CapExitHypercall          Cap = 201
	CapExitOnEmulationFailure Cap = 204
	CapXSave2                 Cap = 208
	CapPMUCapability          Cap = 212
	CapDisableQuirks2         Cap = 213
	CapVMTSCControl           Cap = 214
	CapSystemEventData        Cap = 215
	CapX86TripleFaultEvent    Cap = 218
	CapX86NotifyVMExit        Cap = 219
)

// capName is a switch rather than a map so the package holds no mutable state.
func capName(c Cap) (string, bool) {
	switch c {
	case CapIRQChip:
		return "IRQCHIP", true
	case CapHLT:
		return "HLT", true
	case CapUserMemory:
		return "USER_MEMORY", true
	case CapSetTSSAddr:
		return "SET_TSS_ADDR", true
	case CapExtCPUID:
		return "EXT_CPUID", true
	case CapClocksource:
		return "CLOCKSOURCE", true
	case CapNrVCPUs:
		return "NR_VCPUS", true
	case CapNrMemslots:
		return "NR_MEMSLOTS", true
	case CapPIT:
		return "PIT", true
	case CapMPState:
		return "MP_STATE", true
	case CapCoalescedMMIO:
		return "COALESCED_MMIO", true
	case CapSyncMMU:
		return "SYNC_MMU", true
	case CapUserNMI:
		return "USER_NMI", true
	case CapSetGuestDebug:
		return "SET_GUEST_DEBUG", true
	case CapIRQRouting:
		return "IRQ_ROUTING", true
	case CapMCE:
		return "MCE", true
	case CapIRQFD:
		return "IRQFD", true
	case CapPIT2:
		return "PIT2", true
	case CapPITState2:
		return "PIT_STATE2", true
	case CapIOEventFD:
		return "IOEVENTFD", true
	case CapSetIdentityMapAddr:
		return "SET_IDENTITY_MAP_ADDR", true
	case CapAdjustClock:
		return "ADJUST_CLOCK", true
	case CapInternalErrorData:
		return "INTERNAL_ERROR_DATA", true
	case CapVCPUEvents:
		return "VCPU_EVENTS", true
	case CapHyperV:
		return "HYPERV", true
	case CapHyperVVAPIC:
		return "HYPERV_VAPIC", true
	case CapHyperVSpin:
		return "HYPERV_SPIN", true
	case CapDebugRegs:
		return "DEBUGREGS", true
	case CapEnableCap:
		return "ENABLE_CAP", true
	case CapXSave:
		return "XSAVE", true
	case CapXCRs:
		return "XCRS", true
	case CapAsyncPF:
		return "ASYNC_PF", true
	case CapTSCControl:
		return "TSC_CONTROL", true
	case CapGetTSCKHz:
		return "GET_TSC_KHZ", true
	case CapMaxVCPUs:
		return "MAX_VCPUS", true
	case CapOneReg:
		return "ONE_REG", true
	case CapTSCDeadlineTimer:
		return "TSC_DEADLINE_TIMER", true
	case CapSyncRegs:
		return "SYNC_REGS", true
	case CapKVMClockCtrl:
		return "KVMCLOCK_CTRL", true
	case CapSignalMSI:
		return "SIGNAL_MSI", true
	case CapReadonlyMem:
		return "READONLY_MEM", true
	case CapIRQFDResample:
		return "IRQFD_RESAMPLE", true
	case CapDeviceCtrl:
		return "DEVICE_CTRL", true
	case CapExtEmulCPUID:
		return "EXT_EMUL_CPUID", true
	case CapHyperVTime:
		return "HYPERV_TIME", true
	case CapEnableCapVM:
		return "ENABLE_CAP_VM", true
	case CapIOEventFDNoLength:
		return "IOEVENTFD_NO_LENGTH", true
	case CapVMAttributes:
		return "VM_ATTRIBUTES", true
	case CapCheckExtensionVM:
		return "CHECK_EXTENSION_VM", true
	case CapDisableQuirks:
		return "DISABLE_QUIRKS", true
	case CapX86SMM:
		return "X86_SMM", true
	case CapSplitIRQChip:
		return "SPLIT_IRQCHIP", true
	case CapIOEventFDAnyLength:
		return "IOEVENTFD_ANY_LENGTH", true
	case CapHyperVSynIC:
		return "HYPERV_SYNIC", true
	case CapVCPUAttributes:
		return "VCPU_ATTRIBUTES", true
	case CapMaxVCPUID:
		return "MAX_VCPU_ID", true
	case CapX2APICAPI:
		return "X2APIC_API", true
	case CapImmediateExit:
		return "IMMEDIATE_EXIT", true
	case CapX86DisableExits:
		return "X86_DISABLE_EXITS", true
	case CapHyperVSynIC2:
		return "HYPERV_SYNIC2", true
	case CapHyperVVPIndex:
		return "HYPERV_VP_INDEX", true
	case CapGetMSRFeatures:
		return "GET_MSR_FEATURES", true
	case CapHyperVEventFD:
		return "HYPERV_EVENTFD", true
	case CapHyperVTLBFlush:
		return "HYPERV_TLBFLUSH", true
	case CapNestedState:
		return "NESTED_STATE", true
	case CapMSRPlatformInfo:
		return "MSR_PLATFORM_INFO", true
	case CapHyperVSendIPI:
		return "HYPERV_SEND_IPI", true
	case CapCoalescedPIO:
		return "COALESCED_PIO", true
	case CapExceptionPayload:
		return "EXCEPTION_PAYLOAD", true
	case CapHyperVCPUID:
		return "HYPERV_CPUID", true
	case CapPMUEventFilter:
		return "PMU_EVENT_FILTER", true
	case CapHyperVDirectTLBFlush:
		return "HYPERV_DIRECT_TLBFLUSH", true
	case CapHaltPoll:
		return "HALT_POLL", true
	case CapAsyncPFInt:
		return "ASYNC_PF_INT", true
	case CapStealTime:
		return "STEAL_TIME", true
	case CapX86UserSpaceMSR:
		return "X86_USER_SPACE_MSR", true
	case CapX86MSRFilter:
		return "X86_MSR_FILTER", true
	case CapEnforcePVFeatureCPUID:
		return "ENFORCE_PV_FEATURE_CPUID", true
	case CapSysHyperVCPUID:
		return "SYS_HYPERV_CPUID", true
	case CapDirtyLogRing:
		return "DIRTY_LOG_RING", true
	case CapX86BusLockExit:
		return "X86_BUS_LOCK_EXIT", true
	case CapHyperVEnforceCPUID:
		return "HYPERV_ENFORCE_CPUID", true
	case CapSregs2:
		return "SREGS2", true
	case CapExitHypercall:
		return "EXIT_HYPERCALL", true
	case CapExitOnEmulationFailure:
		return "EXIT_ON_EMULATION_FAILURE", true
	case CapXSave2:
		return "XSAVE2", true
	case CapPMUCapability:
		return "PMU_CAPABILITY", true
	case CapDisableQuirks2:
		return "DISABLE_QUIRKS2", true
	case CapVMTSCControl:
		return "VM_TSC_CONTROL", true
	case CapSystemEventData:
		return "SYSTEM_EVENT_DATA", true
	case CapX86TripleFaultEvent:
		return "X86_TRIPLE_FAULT_EVENT", true
	case CapX86NotifyVMExit:
		return "X86_NOTIFY_VMEXIT", true
	}
	return "", false
}

// String returns the kernel's name without the KVM_CAP_ prefix, or CAP_<n> for
// capabilities this package does not name.
func (c Cap) String() string {
	if n, ok := capName(c); ok {
		return n
	}
	return "CAP_" + strconv.Itoa(int(c))
}

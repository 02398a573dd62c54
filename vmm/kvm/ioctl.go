package kvm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Ioctl request numbers use the kernel's generic encoding (include/uapi/asm-generic/ioctl.h):
//
//	bits 31..30 direction (0 none, 1 write = _IOW, 2 read = _IOR, 3 both = _IOWR)
//	bits 29..16 size of the argument struct
//	bits 15..8  type (KVMIO = 0xAE)
//	bits  7..0  number
//
// Sizes come from unsafe.Sizeof of the ABI structs below, which layout_test.go pins to the kernel's.
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2

	iocNRShift   = 0
	iocTypeShift = 8
	iocSizeShift = 16
	iocDirShift  = 30

	kvmIO = 0xAE
)

// System ioctls (on the /dev/kvm fd).
const (
	// KVM_GET_API_VERSION = _IO(KVMIO, 0x00)
	kvmGetAPIVersion = iocNone<<iocDirShift | kvmIO<<iocTypeShift // nr 0x00
	// KVM_CREATE_VM = _IO(KVMIO, 0x01); returns a VM fd.
	kvmCreateVM = iocNone<<iocDirShift | kvmIO<<iocTypeShift | 0x01
	// KVM_GET_MSR_INDEX_LIST = _IOWR(KVMIO, 0x02, struct kvm_msr_list)
	kvmGetMSRIndexList = (iocRead|iocWrite)<<iocDirShift | unsafe.Sizeof(kvmMSRList{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x02
	// KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03); also valid on a VM fd.
	kvmCheckExtension = iocNone<<iocDirShift | kvmIO<<iocTypeShift | 0x03
	// KVM_GET_VCPU_MMAP_SIZE = _IO(KVMIO, 0x04)
	kvmGetVCPUMmapSize = iocNone<<iocDirShift | kvmIO<<iocTypeShift | 0x04
	// KVM_GET_SUPPORTED_CPUID = _IOWR(KVMIO, 0x05, struct kvm_cpuid2)
	kvmGetSupportedCPUID = (iocRead|iocWrite)<<iocDirShift | unsafe.Sizeof(kvmCPUID2{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x05
)

// VM ioctls (on a VM fd).
const (
	// KVM_CREATE_VCPU = _IO(KVMIO, 0x41); returns a vCPU fd.
	kvmCreateVCPU = iocNone<<iocDirShift | kvmIO<<iocTypeShift | 0x41
	// KVM_SET_USER_MEMORY_REGION = _IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)
	kvmSetUserMemoryRegion = iocWrite<<iocDirShift | unsafe.Sizeof(UserspaceMemoryRegion{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x46
	// KVM_SET_TSS_ADDR = _IO(KVMIO, 0x47); the address is the argument itself.
	kvmSetTSSAddr = iocNone<<iocDirShift | kvmIO<<iocTypeShift | 0x47
	// KVM_SET_IDENTITY_MAP_ADDR = _IOW(KVMIO, 0x48, __u64)
	kvmSetIdentityMapAddr = iocWrite<<iocDirShift | unsafe.Sizeof(uint64(0))<<iocSizeShift | kvmIO<<iocTypeShift | 0x48
	// KVM_CREATE_IRQCHIP = _IO(KVMIO, 0x60)
	kvmCreateIRQChip = iocNone<<iocDirShift | kvmIO<<iocTypeShift | 0x60
	// KVM_IRQ_LINE = _IOW(KVMIO, 0x61, struct kvm_irq_level)
	kvmIRQLine = iocWrite<<iocDirShift | unsafe.Sizeof(kvmIRQLevel{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x61
	// KVM_IRQFD = _IOW(KVMIO, 0x76, struct kvm_irqfd)
	kvmIRQFD = iocWrite<<iocDirShift | unsafe.Sizeof(kvmIRQFDArg{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x76
	// KVM_CREATE_PIT2 = _IOW(KVMIO, 0x77, struct kvm_pit_config)
	kvmCreatePIT2 = iocWrite<<iocDirShift | unsafe.Sizeof(kvmPITConfig{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x77
	// KVM_IOEVENTFD = _IOW(KVMIO, 0x79, struct kvm_ioeventfd)
	kvmIOEventFD = iocWrite<<iocDirShift | unsafe.Sizeof(IOEventFD{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x79
	// KVM_SET_CLOCK = _IOW(KVMIO, 0x7b, struct kvm_clock_data)
	kvmSetClock = iocWrite<<iocDirShift | unsafe.Sizeof(kvmClockData{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x7b
	// KVM_GET_CLOCK = _IOR(KVMIO, 0x7c, struct kvm_clock_data)
	kvmGetClock = iocRead<<iocDirShift | unsafe.Sizeof(kvmClockData{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x7c
	// KVM_SIGNAL_MSI = _IOW(KVMIO, 0xa5, struct kvm_msi)
	kvmSignalMSI = iocWrite<<iocDirShift | unsafe.Sizeof(kvmMSI{})<<iocSizeShift | kvmIO<<iocTypeShift | 0xa5
	// KVM_X86_SET_MSR_FILTER = _IOW(KVMIO, 0xc6, struct kvm_msr_filter)
	kvmX86SetMSRFilter = iocWrite<<iocDirShift | unsafe.Sizeof(kvmMSRFilter{})<<iocSizeShift | kvmIO<<iocTypeShift | 0xc6
	// KVM_SET_GSI_ROUTING = _IOW(KVMIO, 0x6a, struct kvm_irq_routing)
	kvmSetGSIRouting = iocWrite<<iocDirShift | unsafe.Sizeof(kvmIRQRoutingHeader{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x6a
	// KVM_ENABLE_CAP = _IOW(KVMIO, 0xa3, struct kvm_enable_cap); on VM and vCPU fds.
	kvmEnableCap = iocWrite<<iocDirShift | unsafe.Sizeof(kvmEnableCapArg{})<<iocSizeShift | kvmIO<<iocTypeShift | 0xa3
)

// vCPU ioctls (on a vCPU fd).
const (
	// KVM_RUN = _IO(KVMIO, 0x80)
	kvmRun = iocNone<<iocDirShift | kvmIO<<iocTypeShift | 0x80
	// KVM_GET_REGS = _IOR(KVMIO, 0x81, struct kvm_regs)
	kvmGetRegs = iocRead<<iocDirShift | unsafe.Sizeof(Regs{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x81
	// KVM_SET_REGS = _IOW(KVMIO, 0x82, struct kvm_regs)
	kvmSetRegs = iocWrite<<iocDirShift | unsafe.Sizeof(Regs{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x82
	// KVM_GET_SREGS = _IOR(KVMIO, 0x83, struct kvm_sregs)
	kvmGetSregs = iocRead<<iocDirShift | unsafe.Sizeof(Sregs{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x83
	// KVM_SET_SREGS = _IOW(KVMIO, 0x84, struct kvm_sregs)
	kvmSetSregs = iocWrite<<iocDirShift | unsafe.Sizeof(Sregs{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x84
	// KVM_GET_MSRS = _IOWR(KVMIO, 0x88, struct kvm_msrs)
	kvmGetMSRs = (iocRead|iocWrite)<<iocDirShift | unsafe.Sizeof(kvmMSRsHeader{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x88
	// KVM_SET_MSRS = _IOW(KVMIO, 0x89, struct kvm_msrs)
	kvmSetMSRs = iocWrite<<iocDirShift | unsafe.Sizeof(kvmMSRsHeader{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x89
	// KVM_GET_LAPIC = _IOR(KVMIO, 0x8e, struct kvm_lapic_state)
	kvmGetLAPIC = iocRead<<iocDirShift | unsafe.Sizeof(LAPICState{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x8e
	// KVM_SET_LAPIC = _IOW(KVMIO, 0x8f, struct kvm_lapic_state)
	kvmSetLAPIC = iocWrite<<iocDirShift | unsafe.Sizeof(LAPICState{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x8f
	// KVM_SET_CPUID2 = _IOW(KVMIO, 0x90, struct kvm_cpuid2)
	kvmSetCPUID2 = iocWrite<<iocDirShift | unsafe.Sizeof(kvmCPUID2{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x90
	// KVM_GET_CPUID2 = _IOWR(KVMIO, 0x91, struct kvm_cpuid2)
	kvmGetCPUID2 = (iocRead|iocWrite)<<iocDirShift | unsafe.Sizeof(kvmCPUID2{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x91
	// KVM_GET_MP_STATE = _IOR(KVMIO, 0x98, struct kvm_mp_state)
	kvmGetMPState = iocRead<<iocDirShift | unsafe.Sizeof(MPState(0))<<iocSizeShift | kvmIO<<iocTypeShift | 0x98
	// KVM_SET_MP_STATE = _IOW(KVMIO, 0x99, struct kvm_mp_state)
	kvmSetMPState = iocWrite<<iocDirShift | unsafe.Sizeof(MPState(0))<<iocSizeShift | kvmIO<<iocTypeShift | 0x99
	// KVM_NMI = _IO(KVMIO, 0x9a)
	kvmNMI = iocNone<<iocDirShift | kvmIO<<iocTypeShift | 0x9a
	// KVM_GET_VCPU_EVENTS = _IOR(KVMIO, 0x9f, struct kvm_vcpu_events)
	kvmGetVCPUEvents = iocRead<<iocDirShift | unsafe.Sizeof(VCPUEvents{})<<iocSizeShift | kvmIO<<iocTypeShift | 0x9f
	// KVM_SET_VCPU_EVENTS = _IOW(KVMIO, 0xa0, struct kvm_vcpu_events)
	kvmSetVCPUEvents = iocWrite<<iocDirShift | unsafe.Sizeof(VCPUEvents{})<<iocSizeShift | kvmIO<<iocTypeShift | 0xa0
	// KVM_SET_DEBUGREGS = _IOW(KVMIO, 0xa2, struct kvm_debugregs)
	kvmSetDebugRegs = iocWrite<<iocDirShift | unsafe.Sizeof(DebugRegs{})<<iocSizeShift | kvmIO<<iocTypeShift | 0xa2
	// KVM_SET_XSAVE = _IOW(KVMIO, 0xa5, struct kvm_xsave)
	kvmSetXSAVE = iocWrite<<iocDirShift | unsafe.Sizeof(kvmXSAVE{})<<iocSizeShift | kvmIO<<iocTypeShift | 0xa5
	// KVM_SET_XCRS = _IOW(KVMIO, 0xa7, struct kvm_xcrs)
	kvmSetXCRs = iocWrite<<iocDirShift | unsafe.Sizeof(XCRs{})<<iocSizeShift | kvmIO<<iocTypeShift | 0xa7
	// KVM_SET_TSC_KHZ = _IO(KVMIO, 0xa2); the frequency is the argument itself.
	kvmSetTSCKHz = iocNone<<iocDirShift | kvmIO<<iocTypeShift | 0xa2
	// KVM_GET_TSC_KHZ = _IO(KVMIO, 0xa3); the frequency is the return value.
	kvmGetTSCKHz = iocNone<<iocDirShift | kvmIO<<iocTypeShift | 0xa3
	// KVM_SET_DEVICE_ATTR = _IOW(KVMIO, 0xe1, struct kvm_device_attr); also on vCPU fds.
	kvmSetDeviceAttr = iocWrite<<iocDirShift | unsafe.Sizeof(kvmDeviceAttr{})<<iocSizeShift | kvmIO<<iocTypeShift | 0xe1
	// KVM_GET_DEVICE_ATTR = _IOW(KVMIO, 0xe2, struct kvm_device_attr) (_IOW: the struct holds a pointer the kernel writes through).
	kvmGetDeviceAttr = iocWrite<<iocDirShift | unsafe.Sizeof(kvmDeviceAttr{})<<iocSizeShift | kvmIO<<iocTypeShift | 0xe2
	// KVM_HAS_DEVICE_ATTR = _IOW(KVMIO, 0xe3, struct kvm_device_attr)
	kvmHasDeviceAttr = iocWrite<<iocDirShift | unsafe.Sizeof(kvmDeviceAttr{})<<iocSizeShift | kvmIO<<iocTypeShift | 0xe3
)

// ioctl issues an ioctl whose argument is a plain integer and returns the
// kernel's non-negative result. Errors are the raw unix.Errno so callers can
// wrap them with context and errors.Is still sees the errno.
func ioctl(fd int, req uintptr, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// ioctlPtr issues an ioctl whose argument points into Go memory. The
// unsafe.Pointer parameter keeps the referent alive for the whole call; the
// uintptr conversion happens in the Syscall expression as package unsafe requires.
func ioctlPtr(fd int, req uintptr, arg unsafe.Pointer) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

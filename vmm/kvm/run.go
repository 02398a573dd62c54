package kvm

import (
	"errors"
	"fmt"
	"strconv"
	"unsafe"
)

// RunData is struct kvm_run, the page shared with the kernel for each vCPU.
// Fields above Exit are the fixed header; Exit is the 256-byte union whose
// meaning depends on ExitReason (decode it with the accessors below).
type RunData struct {
	// In.
	RequestInterruptWindow uint8
	ImmediateExit          uint8
	_                      [6]uint8
	// Out.
	ExitReason                 uint32
	ReadyForInterruptInjection uint8
	IfFlag                     uint8
	Flags                      uint16
	// In (before KVM_RUN) and out (after).
	CR8      uint64
	APICBase uint64
	// Exit is the exit-reason-specific union.
	Exit [256]byte
	// ValidRegs / DirtyRegs / SyncRegs: the KVM_CAP_SYNC_REGS area.
	ValidRegs uint64
	DirtyRegs uint64
	SyncRegs  [2048]byte
}

// Exit reasons (KVM_EXIT_*), x86 and generic ones.
const (
	ExitUnknown       uint32 = 0
	ExitException     uint32 = 1
	ExitIO            uint32 = 2
	ExitHypercall     uint32 = 3
	ExitDebug         uint32 = 4
	ExitHLT           uint32 = 5
	ExitMMIO          uint32 = 6
	ExitIRQWindowOpen uint32 = 7
	ExitShutdown      uint32 = 8
	ExitFailEntry     uint32 = 9
	ExitIntr          uint32 = 10
	ExitSetTPR        uint32 = 11
	ExitTPRAccess     uint32 = 12
	ExitNMI           uint32 = 16
	ExitInternalError uint32 = 17
	ExitSystemEvent   uint32 = 24
	ExitIOAPICEOI     uint32 = 26
	ExitHyperV        uint32 = 27
	ExitX86RDMSR      uint32 = 29
	ExitX86WRMSR      uint32 = 30
	ExitDirtyRingFull uint32 = 31
	ExitAPResetHold   uint32 = 32
	ExitX86BusLock    uint32 = 33
	ExitXen           uint32 = 34
	ExitNotify        uint32 = 37
	ExitMemoryFault   uint32 = 39
)

// ExitReasonName returns the kernel's name of an exit reason without the
// KVM_EXIT_ prefix, or EXIT_<n>.
func ExitReasonName(r uint32) string {
	switch r {
	case ExitUnknown:
		return "UNKNOWN"
	case ExitException:
		return "EXCEPTION"
	case ExitIO:
		return "IO"
	case ExitHypercall:
		return "HYPERCALL"
	case ExitDebug:
		return "DEBUG"
	case ExitHLT:
		return "HLT"
	case ExitMMIO:
		return "MMIO"
	case ExitIRQWindowOpen:
		return "IRQ_WINDOW_OPEN"
	case ExitShutdown:
		return "SHUTDOWN"
	case ExitFailEntry:
		return "FAIL_ENTRY"
	case ExitIntr:
		return "INTR"
	case ExitSetTPR:
		return "SET_TPR"
	case ExitTPRAccess:
		return "TPR_ACCESS"
	case ExitNMI:
		return "NMI"
	case ExitInternalError:
		return "INTERNAL_ERROR"
	case ExitSystemEvent:
		return "SYSTEM_EVENT"
	case ExitIOAPICEOI:
		return "IOAPIC_EOI"
	case ExitHyperV:
		return "HYPERV"
	case ExitX86RDMSR:
		return "X86_RDMSR"
	case ExitX86WRMSR:
		return "X86_WRMSR"
	case ExitDirtyRingFull:
		return "DIRTY_RING_FULL"
	case ExitAPResetHold:
		return "AP_RESET_HOLD"
	case ExitX86BusLock:
		return "X86_BUS_LOCK"
	case ExitXen:
		return "XEN"
	case ExitNotify:
		return "NOTIFY"
	case ExitMemoryFault:
		return "MEMORY_FAULT"
	}
	return "EXIT_" + strconv.FormatUint(uint64(r), 10)
}

// IO directions (KVM_EXIT_IO_IN / _OUT).
const (
	IOIn  uint8 = 0
	IOOut uint8 = 1
)

// System event types (KVM_SYSTEM_EVENT_*).
const (
	SystemEventShutdown uint32 = 1
	SystemEventReset    uint32 = 2
	SystemEventCrash    uint32 = 3
	SystemEventWakeup   uint32 = 4
	SystemEventSuspend  uint32 = 5
	SystemEventSEVTerm  uint32 = 6
)

// Internal error sub-reasons (KVM_INTERNAL_ERROR_*).
const (
	InternalErrorEmulation            uint32 = 1
	InternalErrorSimulEx              uint32 = 2
	InternalErrorDeliveryEv           uint32 = 3
	InternalErrorUnexpectedExitReason uint32 = 4
)

// Union members of kvm_run's exit union, as the kernel lays them out.

type ioExit struct {
	Direction  uint8
	Size       uint8
	Port       uint16
	Count      uint32
	DataOffset uint64
}

type mmioExit struct {
	PhysAddr uint64
	Data     [8]byte
	Len      uint32
	IsWrite  uint8
}

type failEntryExit struct {
	HardwareEntryFailureReason uint64
	CPU                        uint32
}

type exceptionExit struct {
	Exception uint32
	ErrorCode uint32
}

// dataExit is the shape shared by the internal and system_event members:
// a u32, a u32 count, then up to 16 u64 words.
type dataExit struct {
	Head  uint32
	NData uint32
	Data  [16]uint64
}

// MSRExit is the msr member of the exit union for ExitX86RDMSR/ExitX86WRMSR.
// Userspace answers by setting Data (for RDMSR) and Error (1 injects #GP)
// before the next Run.
type MSRExit struct {
	Error  uint8
	_      [7]uint8
	Reason uint32 // MSRExitReason*
	Index  uint32
	Data   uint64
}

// HypercallExit is the hypercall member of the exit union (ExitHypercall);
// userspace sets Ret before the next Run.
type HypercallExit struct {
	Nr       uint64
	Args     [6]uint64
	Ret      uint64
	LongMode uint32
	_        uint32
}

// The exit union is 8-byte aligned (offset 32 in a page-aligned mapping or a
// RunData allocated by Go), so casting its start to these structs is sound.
func (r *RunData) exit() unsafe.Pointer { return unsafe.Pointer(&r.Exit[0]) }

// IO decodes the io member (ExitIO). dataOffset is relative to the start of
// the kvm_run mapping; use VCPU.IOData for the bytes themselves.
func (r *RunData) IO() (direction uint8, size uint8, port uint16, count uint32, dataOffset uint64) {
	e := (*ioExit)(r.exit())
	return e.Direction, e.Size, e.Port, e.Count, e.DataOffset
}

// MMIO decodes the mmio member (ExitMMIO). For reads, write the result into
// data[:length] before the next Run. length is at most 8 for a sane kernel;
// callers should still clamp it.
func (r *RunData) MMIO() (physAddr uint64, data *[8]byte, length uint32, isWrite bool) {
	e := (*mmioExit)(r.exit())
	return e.PhysAddr, &e.Data, e.Len, e.IsWrite != 0
}

// MSR returns the msr member (ExitX86RDMSR, ExitX86WRMSR), writable in place.
func (r *RunData) MSR() *MSRExit { return (*MSRExit)(r.exit()) }

// Hypercall returns the hypercall member (ExitHypercall), writable in place.
func (r *RunData) Hypercall() *HypercallExit { return (*HypercallExit)(r.exit()) }

// InternalError decodes the internal member (ExitInternalError). data is a
// copy of at most 16 words, however large ndata claims to be.
func (r *RunData) InternalError() (suberror uint32, data []uint64) {
	e := (*dataExit)(r.exit())
	return e.Head, clampData(e)
}

// SystemEvent decodes the system_event member (ExitSystemEvent): the event
// type (SystemEvent*) and a copy of at most 16 data words.
func (r *RunData) SystemEvent() (typ uint32, data []uint64) {
	e := (*dataExit)(r.exit())
	return e.Head, clampData(e)
}

func clampData(e *dataExit) []uint64 {
	n := min(int(e.NData), len(e.Data))
	out := make([]uint64, n)
	copy(out, e.Data[:n])
	return out
}

// FailEntry decodes the fail_entry member (ExitFailEntry).
func (r *RunData) FailEntry() (reason uint64, cpu uint32) {
	e := (*failEntryExit)(r.exit())
	return e.HardwareEntryFailureReason, e.CPU
}

// Exception decodes the ex member (ExitException).
func (r *RunData) Exception() (vector, errorCode uint32) {
	e := (*exceptionExit)(r.exit())
	return e.Exception, e.ErrorCode
}

// HardwareExitReason decodes the hw member (ExitUnknown).
func (r *RunData) HardwareExitReason() uint64 { return *(*uint64)(r.exit()) }

// IOAPICEOI decodes the eoi member (ExitIOAPICEOI): the vector acknowledged.
func (r *RunData) IOAPICEOI() uint8 { return r.Exit[0] }

// ioData bounds-checks the current IO exit's data area against the mapping.
func ioData(mapping []byte) []byte {
	if len(mapping) < int(unsafe.Sizeof(RunData{})) {
		return nil
	}
	_, size, _, count, off := (*RunData)(unsafe.Pointer(&mapping[0])).IO()
	n := uint64(size) * uint64(count)
	if n == 0 || off > uint64(len(mapping)) || n > uint64(len(mapping))-off {
		return nil
	}
	return mapping[off : off+n : off+n]
}

// ErrRunDataBuffer is returned by RunDataFromBytes for buffers that cannot hold a kvm_run.
var ErrRunDataBuffer = errors.New("kvm: buffer cannot hold struct kvm_run")

// RunDataFromBytes views b as a kvm_run, for tests that build exits without
// /dev/kvm. b must be at least unsafe.Sizeof(RunData{}) long and 8-byte aligned
// (for example a []uint64 viewed as bytes).
func RunDataFromBytes(b []byte) (*RunData, error) {
	size := int(unsafe.Sizeof(RunData{}))
	if len(b) < size {
		return nil, fmt.Errorf("%w: %d bytes, need %d", ErrRunDataBuffer, len(b), size)
	}
	if uintptr(unsafe.Pointer(&b[0]))%8 != 0 {
		return nil, fmt.Errorf("%w: not 8-byte aligned", ErrRunDataBuffer)
	}
	return (*RunData)(unsafe.Pointer(&b[0])), nil
}

package vmm

import (
	"fmt"

	"github.com/vmmdev/vmm/vmm/hyperv"
)

// ExitKind classifies a vCPU exit after decoding.
type ExitKind int

const (
	ExitUnknown ExitKind = iota
	ExitIO
	ExitMMIO
	ExitHLT
	ExitShutdown
	ExitSystemEvent
	ExitInternalError
	ExitFailEntry
	ExitRDMSR
	ExitWRMSR
	ExitIntr
	numExitKinds
)

var exitKindNames = [numExitKinds]string{
	ExitUnknown:       "unknown",
	ExitIO:            "io",
	ExitMMIO:          "mmio",
	ExitHLT:           "hlt",
	ExitShutdown:      "shutdown",
	ExitSystemEvent:   "system_event",
	ExitInternalError: "internal_error",
	ExitFailEntry:     "fail_entry",
	ExitRDMSR:         "rdmsr",
	ExitWRMSR:         "wrmsr",
	ExitIntr:          "intr",
}

func (k ExitKind) String() string {
	if k >= 0 && k < numExitKinds {
		return exitKindNames[k]
	}
	return fmt.Sprintf("exit(%d)", int(k))
}

// System event types (KVM_SYSTEM_EVENT_*).
const (
	systemEventShutdown = 1
	systemEventReset    = 2
	systemEventCrash    = 3
)

// Exit is one decoded vCPU exit. For IO and MMIO, Data aliases the kvm_run
// page: a read is answered by filling it in place before the next KVM_RUN.
type Exit struct {
	Kind ExitKind
	// Raw is KVM's exit reason number.
	Raw uint32
	// Addr is the port (IO) or guest-physical address (MMIO).
	Addr  uint64
	Write bool
	// Size is the width of one IO access; Data holds Count*Size bytes for
	// string (rep ins/outs) port I/O.
	Size uint8
	Data []byte
	// MSR and Value for RDMSR/WRMSR exits.
	MSR   uint32
	Value uint64
	// Event is the system event type, Suberror the internal error's.
	Event    uint32
	Suberror uint32
	// HWReason is the hardware entry failure reason.
	HWReason uint64
}

// ioBus is what dispatch needs of a bus (devices/bus.Bus implements it).
type ioBus interface {
	Read(addr uint64, data []byte) bool
	Write(addr uint64, data []byte) bool
}

// Outcome is what dispatch decided: keep running, or stop for a reason; for
// MSR exits, whether the guest gets #GP and what a read returns.
type Outcome struct {
	Stop     *StopReason
	MSRFault bool
	MSRValue uint64
}

// msrHandler answers the MSR accesses that KVM's MSR filter sends to userspace.
type msrHandler interface {
	ReadMSR(vcpu int, msr uint32) (uint64, bool)
	WriteMSR(vcpu int, msr uint32, value uint64) bool
}

// dispatcher holds what exit handling needs. It is pure Go so it can be
// tested with fake exits and fake buses.
type dispatcher struct {
	pio, mmio ioBus
	msr       msrHandler // nil: every filtered MSR access faults
	// hypercall, if set, handles writes to the Hyper-V hypercall and
	// signal ports with the calling vCPU and the port (the hypercall
	// page's "out" exits here).
	hypercall func(vcpu int, port uint64) error
}

// dispatch handles one exit of vCPU vcpu.
func (d *dispatcher) dispatch(vcpu int, e *Exit) Outcome {
	switch e.Kind {
	case ExitIO:
		size := int(e.Size)
		if size == 0 || len(e.Data)%size != 0 {
			return stopError(vcpu, fmt.Errorf("malformed port I/O exit: size %d, %d bytes", size, len(e.Data)))
		}
		if d.hypercall != nil && e.Write && (e.Addr == hyperv.HypercallPort || e.Addr == hyperv.SignalPort) {
			if err := d.hypercall(vcpu, e.Addr); err != nil {
				return stopError(vcpu, err)
			}
			return Outcome{}
		}
		// String I/O arrives as Count elements; each is a separate access.
		for off := 0; off < len(e.Data); off += size {
			el := e.Data[off : off+size]
			if e.Write {
				d.pio.Write(e.Addr, el)
			} else {
				d.pio.Read(e.Addr, el)
			}
		}
		return Outcome{}
	case ExitMMIO:
		if e.Write {
			d.mmio.Write(e.Addr, e.Data)
		} else {
			d.mmio.Read(e.Addr, e.Data)
		}
		return Outcome{}
	case ExitRDMSR:
		if d.msr != nil {
			if v, ok := d.msr.ReadMSR(vcpu, e.MSR); ok {
				return Outcome{MSRValue: v}
			}
		}
		return Outcome{MSRFault: true}
	case ExitWRMSR:
		if d.msr != nil && d.msr.WriteMSR(vcpu, e.MSR, e.Value) {
			return Outcome{}
		}
		return Outcome{MSRFault: true}
	case ExitIntr:
		// A signal interrupted KVM_RUN; the run loop checks for a stop request.
		return Outcome{}
	case ExitShutdown:
		// KVM reports a triple fault this way.
		return stop(StopReason{Kind: StopReset, Source: fmt.Sprintf("vcpu%d", vcpu), Detail: "triple fault (shutdown exit)"})
	case ExitSystemEvent:
		src := fmt.Sprintf("vcpu%d", vcpu)
		switch e.Event {
		case systemEventShutdown:
			return stop(StopReason{Kind: StopPowerOff, Source: src, Detail: "system event shutdown"})
		case systemEventReset:
			return stop(StopReason{Kind: StopReset, Source: src, Detail: "system event reset"})
		case systemEventCrash:
			return stop(StopReason{Kind: StopPanic, Source: src, Detail: "system event crash"})
		}
		return stopError(vcpu, fmt.Errorf("unknown system event %d", e.Event))
	case ExitHLT:
		// Only seen without an in-kernel LAPIC; a halted CPU with nobody to wake it.
		return stopError(vcpu, fmt.Errorf("vCPU halted with no interrupt controller to wake it"))
	case ExitInternalError:
		return stopError(vcpu, fmt.Errorf("KVM internal error, suberror %d (an instruction KVM could not emulate)", e.Suberror))
	case ExitFailEntry:
		return stopError(vcpu, fmt.Errorf("KVM could not enter the guest, hardware reason %#x", e.HWReason))
	}
	return stopError(vcpu, fmt.Errorf("unhandled KVM exit reason %d", e.Raw))
}

func stop(r StopReason) Outcome { return Outcome{Stop: &r} }

func stopError(vcpu int, err error) Outcome {
	return stop(StopReason{Kind: StopError, Source: fmt.Sprintf("vcpu%d", vcpu), Err: err})
}

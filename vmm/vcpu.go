package vmm

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/boot"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// LAPIC register offsets and LVT delivery modes for the boot CPU's local
// interrupt pins (what a PC BIOS programs: LINT0 = ExtINT from the 8259, LINT1 = NMI).
const (
	apicLVTLINT0    = 0x350
	apicLVTLINT1    = 0x360
	apicModeExtINT  = 0x7 << 8
	apicModeNMI     = 0x4 << 8
	apicLVTModeMask = 0x7 << 8
)

// kickSignal interrupts a vCPU thread blocked in KVM_RUN. The Go runtime
// already expects SIGURG (its preemption signal) at any time, so sending it
// needs no handler of our own.
const kickSignal = unix.SIGURG

type vcpu struct {
	id    int
	kvm   *kvm.VCPU
	tid   atomic.Int32
	exits [numExitKinds]atomic.Uint64
	// poke asks the vCPU thread for its liveness (halt.go).
	poke     atomic.Bool
	liveness atomic.Int32
	// sleepGen is the last S3 cycle this vCPU parked for (sleep.go).
	sleepGen uint64
}

func uintptrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func (m *Machine) createVCPUs(entry boot.Entry) error {
	mmapSize, err := m.sys.VCPUMmapSize()
	if err != nil {
		return fmt.Errorf("KVM vCPU mmap size: %w", err)
	}
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return fmt.Errorf("KVM supported CPUID: %w", err)
	}
	var opt cpuidOptions
	if n, err := m.sys.CheckExtension(kvm.CapTSCDeadlineTimer); err == nil && n > 0 {
		opt.tscDeadline = true
	}
	for id := 0; id < m.cfg.CPUs; id++ {
		kv, err := m.vm.CreateVCPU(id, mmapSize)
		if err != nil {
			return fmt.Errorf("create vCPU %d: %w", id, err)
		}
		v := &vcpu{id: id, kvm: kv}
		m.vcpus = append(m.vcpus, v)
		cpuid := vcpuCPUID(supported, id, m.cfg.CPUs, opt)
		// After vcpuCPUID, so the spec sees what the vCPU would get
		// (hypervisor and TSC-deadline bits included) and can hide it.
		if err := m.cfg.CPU.Apply(cpuid); err != nil {
			return invalid("--cpu %s: %v", m.cfg.CPU, err)
		}
		m.cfg.HyperV.ApplyCPUID(cpuid, m.cfg.CPUs)
		if err := kv.SetCPUID2(cpuid); err != nil {
			return fmt.Errorf("set CPUID of vCPU %d: %w", id, err)
		}
		if err := setLINTs(kv); err != nil {
			return fmt.Errorf("vCPU %d: %w", id, err)
		}
		// Application processors wait in KVM for INIT/SIPI from the boot
		// CPU. Firmware starts where KVM's reset state puts the boot CPU:
		// CS F000 (base FFFF0000), IP FFF0.
		if id == 0 && !m.boot.fromReset() {
			if err := m.setupBootCPU(kv, entry); err != nil {
				return err
			}
		}
	}
	return nil
}

func setLINTs(v *kvm.VCPU) error {
	st, err := v.GetLAPIC()
	if err != nil {
		return fmt.Errorf("get LAPIC: %w", err)
	}
	lintModes(&st)
	if err := v.SetLAPIC(st); err != nil {
		return fmt.Errorf("set LAPIC: %w", err)
	}
	return nil
}

// lintModes sets the delivery modes of the local interrupt pins as a PC
// BIOS programs them, keeping their mask bits.
func lintModes(st *kvm.LAPICState) {
	setLVT := func(off int, mode uint32) {
		st.SetReg(off, st.Reg(off)&^apicLVTModeMask|mode)
	}
	setLVT(apicLVTLINT0, apicModeExtINT)
	setLVT(apicLVTLINT1, apicModeNMI)
}

func (m *Machine) setupBootCPU(v *kvm.VCPU, entry boot.Entry) error {
	sregs, err := v.GetSregs()
	if err != nil {
		return fmt.Errorf("get sregs: %w", err)
	}
	var regs kvm.Regs
	if err := boot.SetupCPU(m.mem, entry, &sregs, &regs); err != nil {
		return fmt.Errorf("set up %v entry: %w", entry.Mode, err)
	}
	if err := v.SetSregs(sregs); err != nil {
		return fmt.Errorf("set sregs: %w", err)
	}
	if err := v.SetRegs(regs); err != nil {
		return fmt.Errorf("set regs: %w", err)
	}
	return nil
}

// kick makes the vCPU leave KVM_RUN (or not enter it again).
func (v *vcpu) kick() {
	v.kvm.RunData().ImmediateExit = 1
	if tid := v.tid.Load(); tid != 0 {
		// ESRCH means the thread is gone, which is what we want anyway.
		_ = unix.Tgkill(unix.Getpid(), int(tid), kickSignal)
	}
}

// runVCPU is one vCPU's loop, on a thread of its own for the whole run (KVM
// requires every KVM_RUN of a vCPU to come from the same thread for
// performance, and the kick signal must find it).
func (m *Machine) runVCPU(v *vcpu) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	v.tid.Store(int32(unix.Gettid()))
	defer v.tid.Store(0)

	run := v.kvm.RunData()
	for {
		select {
		case <-m.latch.Done():
			return
		default:
		}
		if m.sleep != nil {
			if g := m.sleep.gen.Load(); g != v.sleepGen {
				v.sleepGen = g
				if !m.parkVCPU(v) {
					return
				}
				continue
			}
		}
		if m.hv != nil {
			if err := m.hv.beforeRun(v); err != nil {
				m.latch.Stop(StopReason{Kind: StopError, Source: fmt.Sprintf("vcpu%d", v.id), Err: err})
				return
			}
		}
		err := v.kvm.Run()
		if m.hv != nil {
			m.hv.part.LeaveGuest(v.id)
		}
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				v.exits[ExitIntr].Add(1)
				v.answerPoke(true)
				continue
			}
			m.latch.Stop(StopReason{Kind: StopError, Source: fmt.Sprintf("vcpu%d", v.id), Err: fmt.Errorf("KVM_RUN: %w", err)})
			return
		}
		e := decodeExit(v.kvm, run)
		v.exits[e.Kind].Add(1)
		v.answerPoke(false)
		out := m.disp.dispatch(v.id, &e)
		switch e.Kind {
		case ExitRDMSR, ExitWRMSR:
			msr := run.MSR()
			if out.MSRFault {
				msr.Error = 1
			} else {
				msr.Error = 0
				if e.Kind == ExitRDMSR {
					msr.Data = out.MSRValue
				}
			}
		}
		if out.Stop != nil {
			m.latch.Stop(*out.Stop)
			return
		}
	}
}

// decodeExit turns the kvm_run page into an Exit value.
func decodeExit(v *kvm.VCPU, run *kvm.RunData) Exit {
	e := Exit{Raw: run.ExitReason}
	switch run.ExitReason {
	case kvm.ExitIO:
		dir, size, port, _, _ := run.IO()
		e.Kind, e.Addr, e.Write, e.Size = ExitIO, uint64(port), dir == kvm.IOOut, size
		e.Data = v.IOData()
	case kvm.ExitMMIO:
		addr, data, n, write := run.MMIO()
		e.Kind, e.Addr, e.Write = ExitMMIO, addr, write
		e.Data = data[:min(n, uint32(len(data)))]
	case kvm.ExitX86RDMSR, kvm.ExitX86WRMSR:
		msr := run.MSR()
		e.Kind, e.MSR, e.Value = ExitRDMSR, msr.Index, msr.Data
		if run.ExitReason == kvm.ExitX86WRMSR {
			e.Kind = ExitWRMSR
		}
	case kvm.ExitHLT:
		e.Kind = ExitHLT
	case kvm.ExitShutdown:
		e.Kind = ExitShutdown
	case kvm.ExitSystemEvent:
		e.Kind = ExitSystemEvent
		e.Event, _ = run.SystemEvent()
	case kvm.ExitInternalError:
		e.Kind = ExitInternalError
		e.Suberror, _ = run.InternalError()
	case kvm.ExitFailEntry:
		e.Kind = ExitFailEntry
		e.HWReason, _ = run.FailEntry()
	case kvm.ExitIntr:
		e.Kind = ExitIntr
	}
	return e
}

package kvm

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine fd.
type VM struct {
	fd int
}

// Close closes the VM fd. The kernel keeps the VM alive while vCPU fds remain open.
func (vm *VM) Close() error { return closeFD(&vm.fd, "VM fd") }

// FD returns the VM file descriptor (-1 after Close).
func (vm *VM) FD() int { return vm.fd }

// CheckExtension is KVM_CHECK_EXTENSION on the VM fd, which answers for this
// VM (for example its vCPU limits) where the answers differ from /dev/kvm's.
func (vm *VM) CheckExtension(c Cap) (int, error) {
	r, err := ioctl(vm.fd, kvmCheckExtension, uintptr(c))
	if err != nil {
		return 0, fmt.Errorf("KVM_CHECK_EXTENSION(%s) on VM: %w", c, err)
	}
	return int(r), nil
}

// SetUserMemoryRegion maps host memory into the guest (KVM_SET_USER_MEMORY_REGION).
// The host memory must stay mapped for as long as the slot exists.
func (vm *VM) SetUserMemoryRegion(r UserspaceMemoryRegion) error {
	if _, err := ioctlPtr(vm.fd, kvmSetUserMemoryRegion, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION slot %d gpa %#x size %#x: %w",
			r.Slot, r.GuestPhysAddr, r.MemorySize, err)
	}
	return nil
}

// SetTSSAddr places the three-page TSS region KVM needs on Intel hosts for real mode (KVM_SET_TSS_ADDR).
func (vm *VM) SetTSSAddr(addr uint64) error {
	if _, err := ioctl(vm.fd, kvmSetTSSAddr, uintptr(addr)); err != nil {
		return fmt.Errorf("KVM_SET_TSS_ADDR %#x: %w", addr, err)
	}
	return nil
}

// SetIdentityMapAddr places the one-page identity-map page table KVM uses on
// Intel hosts for real mode (KVM_SET_IDENTITY_MAP_ADDR). Call before creating vCPUs.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	if _, err := ioctlPtr(vm.fd, kvmSetIdentityMapAddr, unsafe.Pointer(&addr)); err != nil {
		return fmt.Errorf("KVM_SET_IDENTITY_MAP_ADDR %#x: %w", addr, err)
	}
	return nil
}

// CreateIRQChip creates the in-kernel PIC, IOAPIC and per-vCPU LAPICs (KVM_CREATE_IRQCHIP).
// Call before creating vCPUs.
func (vm *VM) CreateIRQChip() error {
	if _, err := ioctl(vm.fd, kvmCreateIRQChip, 0); err != nil {
		return fmt.Errorf("KVM_CREATE_IRQCHIP: %w", err)
	}
	return nil
}

// CreatePIT2 creates the in-kernel i8254 PIT (KVM_CREATE_PIT2); flags may hold PITSpeakerDummy.
func (vm *VM) CreatePIT2(flags uint32) error {
	cfg := kvmPITConfig{Flags: flags}
	if _, err := ioctlPtr(vm.fd, kvmCreatePIT2, unsafe.Pointer(&cfg)); err != nil {
		return fmt.Errorf("KVM_CREATE_PIT2 flags %#x: %w", flags, err)
	}
	return nil
}

// IRQLine sets the level of an in-kernel irqchip input (GSI) (KVM_IRQ_LINE).
// Edge-triggered interrupts are a raise followed by a lower.
func (vm *VM) IRQLine(irq uint32, level bool) error {
	l := kvmIRQLevel{IRQ: irq}
	if level {
		l.Level = 1
	}
	if _, err := ioctlPtr(vm.fd, kvmIRQLine, unsafe.Pointer(&l)); err != nil {
		return fmt.Errorf("KVM_IRQ_LINE irq %d level %t: %w", irq, level, err)
	}
	return nil
}

// IRQFD binds an eventfd to a GSI so that writing the eventfd raises the
// interrupt without a trip through userspace (KVM_IRQFD). flags is 0 to
// assign or IRQFDDeassign to remove the binding.
func (vm *VM) IRQFD(fd int, gsi uint32, flags uint32) error {
	a := kvmIRQFDArg{FD: uint32(fd), GSI: gsi, Flags: flags}
	if _, err := ioctlPtr(vm.fd, kvmIRQFD, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("KVM_IRQFD fd %d gsi %d flags %#x: %w", fd, gsi, flags, err)
	}
	return nil
}

// IOEventFD registers (or, with IOEventFDDeassign, removes) an ioeventfd (KVM_IOEVENTFD).
func (vm *VM) IOEventFD(e IOEventFD) error {
	if _, err := ioctlPtr(vm.fd, kvmIOEventFD, unsafe.Pointer(&e)); err != nil {
		return fmt.Errorf("KVM_IOEVENTFD addr %#x len %d flags %#x: %w", e.Addr, e.Len, e.Flags, err)
	}
	return nil
}

// SignalMSI injects an MSI (KVM_SIGNAL_MSI). delivered is the kernel's
// result: >0 delivered, 0 blocked by the guest (masked/disabled).
func (vm *VM) SignalMSI(addrLo, addrHi, data uint32) (delivered int, err error) {
	m := kvmMSI{AddressLo: addrLo, AddressHi: addrHi, Data: data}
	r, err := ioctlPtr(vm.fd, kvmSignalMSI, unsafe.Pointer(&m))
	if err != nil {
		return 0, fmt.Errorf("KVM_SIGNAL_MSI addr %#x:%#x data %#x: %w", addrHi, addrLo, data, err)
	}
	return int(r), nil
}

// ErrTooManyArgs is returned by EnableCap when given more than four arguments.
var ErrTooManyArgs = errors.New("kvm: KVM_ENABLE_CAP takes at most 4 arguments")

// EnableCap enables a VM capability with up to four arguments (KVM_ENABLE_CAP on the VM fd).
func (vm *VM) EnableCap(c Cap, args ...uint64) error {
	return enableCap(vm.fd, "VM", c, args)
}

func enableCap(fd int, on string, c Cap, args []uint64) error {
	a := kvmEnableCapArg{Cap: uint32(c)}
	if len(args) > len(a.Args) {
		return fmt.Errorf("KVM_ENABLE_CAP(%s) on %s: %d args: %w", c, on, len(args), ErrTooManyArgs)
	}
	copy(a.Args[:], args)
	if _, err := ioctlPtr(fd, kvmEnableCap, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("KVM_ENABLE_CAP(%s, %#x) on %s: %w", c, args, on, err)
	}
	return nil
}

// Arguments of KVM_CAP_X86_USER_SPACE_MSR: which failed MSR accesses exit to
// userspace instead of injecting #GP (KVM_MSR_EXIT_REASON_*). They also
// appear in MSRExit.Reason. Untyped so they serve as EnableCap arguments
// (uint64) and as Reason values (uint32) alike.
const (
	MSRExitReasonInval   = 1 << 0 // access KVM would #GP
	MSRExitReasonUnknown = 1 << 1 // MSR KVM does not know
	MSRExitReasonFilter  = 1 << 2 // access denied by the MSR filter
)

// GetClock returns the VM's kvmclock time in nanoseconds (KVM_GET_CLOCK).
func (vm *VM) GetClock() (uint64, error) {
	var d kvmClockData
	if _, err := ioctlPtr(vm.fd, kvmGetClock, unsafe.Pointer(&d)); err != nil {
		return 0, fmt.Errorf("KVM_GET_CLOCK: %w", err)
	}
	return d.Clock, nil
}

// SetClock sets the VM's kvmclock time in nanoseconds (KVM_SET_CLOCK).
func (vm *VM) SetClock(ns uint64) error {
	d := kvmClockData{Clock: ns}
	if _, err := ioctlPtr(vm.fd, kvmSetClock, unsafe.Pointer(&d)); err != nil {
		return fmt.Errorf("KVM_SET_CLOCK %d: %w", ns, err)
	}
	return nil
}

// ErrMmapSize means CreateVCPU was given a mapping size smaller than struct kvm_run.
var ErrMmapSize = errors.New("kvm: vCPU mmap size smaller than struct kvm_run")

// CreateVCPU creates vCPU id (KVM_CREATE_VCPU) and maps its shared kvm_run
// area of mmapSize bytes, which must be System.VCPUMmapSize().
func (vm *VM) CreateVCPU(id int, mmapSize int) (*VCPU, error) {
	if mmapSize < int(unsafe.Sizeof(RunData{})) {
		return nil, fmt.Errorf("create vCPU %d: size %d < %d: %w", id, mmapSize, unsafe.Sizeof(RunData{}), ErrMmapSize)
	}
	r, err := ioctl(vm.fd, kvmCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU %d: %w", id, err)
	}
	fd := int(r)
	mem, err := unix.Mmap(fd, 0, mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("mmap kvm_run of vCPU %d (%d bytes): %w", id, mmapSize, err)
	}
	return &VCPU{fd: fd, id: id, run: mem}, nil
}

// msrFilterMaxRanges is KVM_MSR_FILTER_MAX_RANGES.
const msrFilterMaxRanges = 16

// msrFilterMaxBitmap is KVM_MSR_FILTER_MAX_BITMAP_SIZE, in bytes.
const msrFilterMaxBitmap = 0x600

// MSR filter range flags (KVM_MSR_FILTER_READ / _WRITE).
const (
	MSRFilterRead  uint32 = 1 << 0
	MSRFilterWrite uint32 = 1 << 1
)

// MSRFilter is struct kvm_msr_filter in Go form. Accesses to MSRs outside
// every range are allowed unless DefaultDeny is set.
type MSRFilter struct {
	DefaultDeny bool
	Ranges      []MSRFilterRange
}

// MSRFilterRange covers MSRs Base..Base+NMSRs-1 for the accesses in Flags.
// Bit i of Bitmap (LSB first) set allows MSR Base+i; clear denies it.
type MSRFilterRange struct {
	Flags  uint32
	Base   uint32
	NMSRs  uint32
	Bitmap []byte
}

// ErrInvalidMSRFilter is wrapped by SetMSRFilter for filters the kernel would reject or misread.
var ErrInvalidMSRFilter = errors.New("kvm: invalid MSR filter")

// encodeMSRFilter validates f and builds the kernel struct. The kernel reads
// whole longs of bitmap, so each bitmap is copied into a buffer padded to
// 8-byte multiples; the returned bitmaps must stay alive across the ioctl.
func encodeMSRFilter(f MSRFilter) (*kvmMSRFilter, [][]byte, error) {
	if len(f.Ranges) > msrFilterMaxRanges {
		return nil, nil, fmt.Errorf("%w: %d ranges, at most %d", ErrInvalidMSRFilter, len(f.Ranges), msrFilterMaxRanges)
	}
	k := &kvmMSRFilter{}
	if f.DefaultDeny {
		k.Flags = 1 // KVM_MSR_FILTER_DEFAULT_DENY
	}
	keep := make([][]byte, 0, len(f.Ranges))
	for i, r := range f.Ranges {
		if r.Flags == 0 || r.Flags&^(MSRFilterRead|MSRFilterWrite) != 0 {
			return nil, nil, fmt.Errorf("%w: range %d: flags %#x", ErrInvalidMSRFilter, i, r.Flags)
		}
		if r.NMSRs == 0 {
			return nil, nil, fmt.Errorf("%w: range %d: no MSRs", ErrInvalidMSRFilter, i)
		}
		padded := (uint64(r.NMSRs) + 63) / 64 * 8
		if padded > msrFilterMaxBitmap {
			return nil, nil, fmt.Errorf("%w: range %d: %d MSRs need a %d-byte bitmap, at most %d",
				ErrInvalidMSRFilter, i, r.NMSRs, padded, msrFilterMaxBitmap)
		}
		if need := (uint64(r.NMSRs) + 7) / 8; uint64(len(r.Bitmap)) < need {
			return nil, nil, fmt.Errorf("%w: range %d: bitmap has %d bytes, %d MSRs need %d",
				ErrInvalidMSRFilter, i, len(r.Bitmap), r.NMSRs, need)
		}
		if uint64(r.Base)+uint64(r.NMSRs) > 1<<32 {
			return nil, nil, fmt.Errorf("%w: range %d: base %#x + %d MSRs wraps", ErrInvalidMSRFilter, i, r.Base, r.NMSRs)
		}
		bm := make([]byte, padded)
		copy(bm, r.Bitmap)
		keep = append(keep, bm)
		k.Ranges[i] = kvmMSRFilterRange{Flags: r.Flags, NMSRs: r.NMSRs, Base: r.Base, Bitmap: &bm[0]}
	}
	return k, keep, nil
}

// SetMSRFilter installs f (KVM_X86_SET_MSR_FILTER), replacing any previous
// filter; an empty allow-by-default filter removes filtering. Denied accesses
// exit to userspace when KVM_CAP_X86_USER_SPACE_MSR is enabled with
// MSRExitReasonFilter, and raise #GP otherwise.
func (vm *VM) SetMSRFilter(f MSRFilter) error {
	k, keep, err := encodeMSRFilter(f)
	if err != nil {
		return err
	}
	// The kernel copies the bitmaps during the ioctl; pinning keeps them
	// allocated and in place until it returns.
	var pin runtime.Pinner
	defer pin.Unpin()
	for _, bm := range keep {
		pin.Pin(&bm[0])
	}
	_, err = ioctlPtr(vm.fd, kvmX86SetMSRFilter, unsafe.Pointer(k))
	runtime.KeepAlive(keep)
	if err != nil {
		return fmt.Errorf("KVM_X86_SET_MSR_FILTER (%d ranges): %w", len(f.Ranges), err)
	}
	return nil
}

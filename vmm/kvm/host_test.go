package kvm_test

import (
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/vmmdev/vmm/internal/testenv"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/vmm/kvm"
)

const (
	guestMemSize = 0x10000 // 64 KiB of RAM at guest-physical 0
	guestCode    = 0x1000  // where test programs are loaded and entered (real mode, CS=0)
	guestMMIO    = 0x10000 // first address above RAM: accesses exit as MMIO
)

type machine struct {
	sys  *kvm.System
	vm   *kvm.VM
	mem  []byte
	vcpu *kvm.VCPU
}

type setup struct {
	irqchip bool                      // create the in-kernel irqchip and PIT
	before  func(*testing.T, *kvm.VM) // runs before the vCPU is created
	cpuid   *kvm.CPUID                // set on the vCPU before the first run
}

// newMachine builds a VM with 64 KiB of RAM holding code at guestCode and one
// vCPU in real mode about to execute it.
func newMachine(t *testing.T, code []byte, s setup) *machine {
	t.Helper()
	sys := kvmtest.Require(t)
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.Close() })
	mem, err := unix.Mmap(-1, 0, guestMemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Munmap(mem) })
	copy(mem[guestCode:], code)
	if err := vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{
		Slot: 0, GuestPhysAddr: 0, MemorySize: guestMemSize, UserspaceAddr: uint64(uintptr(unsafe.Pointer(&mem[0]))),
	}); err != nil {
		t.Fatal(err)
	}
	if err := vm.SetTSSAddr(0xfffbd000); err != nil {
		t.Fatal(err)
	}
	if err := vm.SetIdentityMapAddr(0xfffbc000); err != nil {
		t.Fatal(err)
	}
	if s.irqchip {
		if err := vm.CreateIRQChip(); err != nil {
			t.Fatal(err)
		}
		if err := vm.CreatePIT2(kvm.PITSpeakerDummy); err != nil {
			t.Fatal(err)
		}
	}
	if s.before != nil {
		s.before(t, vm)
	}
	size, err := sys.VCPUMmapSize()
	if err != nil {
		t.Fatal(err)
	}
	vcpu, err := vm.CreateVCPU(0, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := vcpu.Close(); err != nil {
			t.Errorf("close vCPU: %v", err)
		}
	})
	if s.cpuid != nil {
		if err := vcpu.SetCPUID2(s.cpuid); err != nil {
			t.Fatal(err)
		}
	}
	sregs, err := vcpu.GetSregs()
	if err != nil {
		t.Fatal(err)
	}
	sregs.CS.Base, sregs.CS.Selector = 0, 0
	sregs.DS.Base, sregs.DS.Selector = 0, 0
	if err := vcpu.SetSregs(sregs); err != nil {
		t.Fatal(err)
	}
	if err := vcpu.SetRegs(kvm.Regs{RIP: guestCode, RFLAGS: 2}); err != nil {
		t.Fatal(err)
	}
	return &machine{sys: sys, vm: vm, mem: mem, vcpu: vcpu}
}

// run enters the guest until an exit that is not a spurious EINTR/EAGAIN and
// returns its reason.
func (m *machine) run(t *testing.T) uint32 {
	t.Helper()
	for range 100 {
		err := m.vcpu.Run()
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return m.vcpu.RunData().ExitReason
	}
	t.Fatal("KVM_RUN kept returning EINTR/EAGAIN")
	return 0
}

// expectIO runs to the next exit, requires it to be port I/O as described,
// and returns the data area.
func (m *machine) expectIO(t *testing.T, dir uint8, port uint16, size uint8) []byte {
	t.Helper()
	if r := m.run(t); r != kvm.ExitIO {
		m.dumpExit(t, r)
		t.Fatalf("exit %s, want IO", kvm.ExitReasonName(r))
	}
	d, sz, p, count, _ := m.vcpu.RunData().IO()
	if d != dir || p != port || sz != size || count != 1 {
		t.Fatalf("IO exit dir %d port %#x size %d count %d, want dir %d port %#x size %d count 1", d, p, sz, count, dir, port, size)
	}
	data := m.vcpu.IOData()
	if len(data) != int(size) {
		t.Fatalf("IOData has %d bytes, want %d", len(data), size)
	}
	return data
}

func (m *machine) dumpExit(t *testing.T, reason uint32) {
	t.Helper()
	rd := m.vcpu.RunData()
	switch reason {
	case kvm.ExitInternalError:
		sub, data := rd.InternalError()
		t.Logf("internal error suberror %d data %#x", sub, data)
	case kvm.ExitFailEntry:
		r, cpu := rd.FailEntry()
		t.Logf("fail entry reason %#x cpu %d", r, cpu)
	}
	if regs, err := m.vcpu.GetRegs(); err == nil {
		t.Logf("RIP %#x RAX %#x", regs.RIP, regs.RAX)
	}
}

func TestKVMSystem(t *testing.T) {
	sys := kvmtest.Require(t)
	v, err := sys.APIVersion()
	if err != nil || v != 12 {
		t.Fatalf("APIVersion = %d, %v; want 12", v, err)
	}
	for _, c := range []kvm.Cap{kvm.CapUserMemory, kvm.CapIRQChip, kvm.CapImmediateExit, kvm.CapIOEventFD, kvm.CapIRQFD} {
		n, err := sys.CheckExtension(c)
		if err != nil {
			t.Fatal(err)
		}
		if n <= 0 {
			t.Errorf("CheckExtension(%s) = %d, want > 0", c, n)
		}
	}
	for _, c := range []kvm.Cap{kvm.CapHyperV, kvm.CapTSCControl, kvm.CapX86UserSpaceMSR, kvm.CapX86MSRFilter, kvm.CapNrVCPUs, kvm.CapMaxVCPUs} {
		n, err := sys.CheckExtension(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s = %d", c, n)
	}
	size, err := sys.VCPUMmapSize()
	if err != nil {
		t.Fatal(err)
	}
	if size < int(unsafe.Sizeof(kvm.RunData{})) {
		t.Errorf("VCPUMmapSize = %d, smaller than kvm_run", size)
	}
	cpuid, err := sys.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	if len(cpuid.Entries) == 0 || cpuid.Get(0, 0) == nil {
		t.Fatalf("SupportedCPUID has %d entries and no leaf 0", len(cpuid.Entries))
	}
	if max := cpuid.Get(0, 0).EAX; max < 1 {
		t.Errorf("leaf 0 EAX (max basic leaf) = %d", max)
	}
	msrs, err := sys.MSRIndexList()
	if err != nil {
		t.Fatal(err)
	}
	if len(msrs) == 0 {
		t.Fatal("MSRIndexList is empty")
	}
	t.Logf("%d CPUID entries, %d MSRs, mmap size %d", len(cpuid.Entries), len(msrs), size)
}

func TestOpenErrors(t *testing.T) {
	if _, err := kvm.Open("/nonexistent/kvm"); !errors.Is(err, kvm.ErrNoKVM) {
		t.Errorf("Open(missing) = %v, want ErrNoKVM", err)
	}
	// /dev/null opens but answers no KVM ioctl.
	_, err := kvm.Open("/dev/null")
	if err == nil || !errors.Is(err, unix.ENOTTY) || !strings.HasPrefix(err.Error(), "/dev/null: ") {
		t.Errorf("Open(/dev/null) = %v, want ENOTTY naming the path", err)
	}
}

func TestKVMRunPortIO(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// mov al,0x42; out 0x10,al; in al,0x11; out 0x10,al; hlt
	m := newMachine(t, []byte{0xb0, 0x42, 0xe6, 0x10, 0xe4, 0x11, 0xe6, 0x10, 0xf4}, setup{irqchip: true})
	if d := m.expectIO(t, kvm.IOOut, 0x10, 1); d[0] != 0x42 {
		t.Fatalf("out data %#x, want 0x42", d[0])
	}
	m.expectIO(t, kvm.IOIn, 0x11, 1)[0] = 0x5a
	if d := m.expectIO(t, kvm.IOOut, 0x10, 1); d[0] != 0x5a {
		t.Fatalf("value read by IN then written = %#x, want 0x5a", d[0])
	}
	// With hardware virtualization an exit for OUT leaves RIP on the
	// instruction until the next KVM_RUN completes it (PVM's emulator had
	// already moved on). KVM_RUN with immediate_exit completes the pending
	// I/O and returns EINTR without entering the guest, as before saving
	// state.
	m.vcpu.RunData().ImmediateExit = 1
	if err := m.vcpu.Run(); !errors.Is(err, unix.EINTR) {
		t.Fatalf("Run with immediate_exit = %v, want EINTR", err)
	}
	m.vcpu.RunData().ImmediateExit = 0
	regs, err := m.vcpu.GetRegs()
	if err != nil {
		t.Fatal(err)
	}
	if regs.RAX&0xff != 0x5a || regs.RIP != guestCode+8 {
		t.Errorf("after IO: RAX %#x RIP %#x, want AL 0x5a RIP %#x", regs.RAX, regs.RIP, guestCode+8)
	}
}

func TestKVMRunHLT(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Without the in-kernel irqchip, HLT exits to userspace.
	m := newMachine(t, []byte{0xf4}, setup{})
	if r := m.run(t); r != kvm.ExitHLT {
		m.dumpExit(t, r)
		t.Fatalf("exit %s, want HLT", kvm.ExitReasonName(r))
	}
}

func TestKVMRunMMIO(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	code := []byte{
		0xb8, 0x00, 0x10, // mov ax, 0x1000
		0x8e, 0xd8, // mov ds, ax
		0xc6, 0x06, 0x00, 0x00, 0x99, // mov byte [0], 0x99   -> MMIO write at 0x10000
		0xa0, 0x04, 0x00, // mov al, [4]                       -> MMIO read at 0x10004
		0xe6, 0x10, // out 0x10, al
		0xf4,
	}
	m := newMachine(t, code, setup{irqchip: true})
	if r := m.run(t); r != kvm.ExitMMIO {
		m.dumpExit(t, r)
		t.Fatalf("exit %s, want MMIO", kvm.ExitReasonName(r))
	}
	addr, data, n, write := m.vcpu.RunData().MMIO()
	if addr != guestMMIO || n != 1 || !write || data[0] != 0x99 {
		t.Fatalf("MMIO addr %#x len %d write %t data %#x, want write of 0x99 at %#x", addr, n, write, data[0], guestMMIO)
	}
	if r := m.run(t); r != kvm.ExitMMIO {
		t.Fatalf("exit %s, want MMIO", kvm.ExitReasonName(r))
	}
	addr, data, n, write = m.vcpu.RunData().MMIO()
	if addr != guestMMIO+4 || n != 1 || write {
		t.Fatalf("MMIO addr %#x len %d write %t, want read at %#x", addr, n, write, guestMMIO+4)
	}
	data[0] = 0x77
	if d := m.expectIO(t, kvm.IOOut, 0x10, 1); d[0] != 0x77 {
		t.Fatalf("MMIO read result reached guest as %#x, want 0x77", d[0])
	}
}

func TestKVMImmediateExit(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m := newMachine(t, []byte{0xb0, 0x42, 0xe6, 0x10, 0xf4}, setup{irqchip: true})
	m.vcpu.RunData().ImmediateExit = 1
	if err := m.vcpu.Run(); !errors.Is(err, unix.EINTR) {
		t.Fatalf("Run with immediate_exit = %v, want EINTR", err)
	}
	m.vcpu.RunData().ImmediateExit = 0
	if d := m.expectIO(t, kvm.IOOut, 0x10, 1); d[0] != 0x42 {
		t.Fatalf("after immediate exit: out data %#x, want 0x42", d[0])
	}
}

func TestKVMUserSpaceMSRFilter(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	code := []byte{
		0x66, 0xb9, 0x00, 0x00, 0x00, 0x40, // mov ecx, 0x40000000
		0x0f, 0x32, // rdmsr
		0x66, 0xe7, 0x10, // out 0x10, eax
		0x66, 0x89, 0xd0, // mov eax, edx
		0x66, 0xe7, 0x10, // out 0x10, eax
		0x66, 0xb8, 0x78, 0x56, 0x34, 0x12, // mov eax, 0x12345678
		0x66, 0xba, 0x21, 0x43, 0x65, 0x87, // mov edx, 0x87654321
		0x0f, 0x30, // wrmsr
		0xf4,
	}
	m := newMachine(t, code, setup{irqchip: true, before: func(t *testing.T, vm *kvm.VM) {
		if err := vm.EnableCap(kvm.CapX86UserSpaceMSR, kvm.MSRExitReasonFilter); err != nil {
			t.Fatal(err)
		}
		// All-zero bitmap: every Hyper-V synthetic MSR is denied and so exits.
		if err := vm.SetMSRFilter(kvm.MSRFilter{Ranges: []kvm.MSRFilterRange{{
			Flags: kvm.MSRFilterRead | kvm.MSRFilterWrite, Base: 0x40000000, NMSRs: 0x200, Bitmap: make([]byte, 0x200/8),
		}}}); err != nil {
			t.Fatal(err)
		}
	}})
	if r := m.run(t); r != kvm.ExitX86RDMSR {
		m.dumpExit(t, r)
		t.Fatalf("exit %s, want X86_RDMSR", kvm.ExitReasonName(r))
	}
	msr := m.vcpu.RunData().MSR()
	if msr.Index != 0x40000000 || msr.Reason != kvm.MSRExitReasonFilter {
		t.Fatalf("RDMSR exit index %#x reason %#x, want 0x40000000 reason filter", msr.Index, msr.Reason)
	}
	msr.Data = 0x1122334455667788
	msr.Error = 0
	if d := m.expectIO(t, kvm.IOOut, 0x10, 4); binary.LittleEndian.Uint32(d) != 0x55667788 {
		t.Fatalf("EAX after RDMSR = %#x, want 0x55667788", binary.LittleEndian.Uint32(d))
	}
	if d := m.expectIO(t, kvm.IOOut, 0x10, 4); binary.LittleEndian.Uint32(d) != 0x11223344 {
		t.Fatalf("EDX after RDMSR = %#x, want 0x11223344", binary.LittleEndian.Uint32(d))
	}
	if r := m.run(t); r != kvm.ExitX86WRMSR {
		m.dumpExit(t, r)
		t.Fatalf("exit %s, want X86_WRMSR", kvm.ExitReasonName(r))
	}
	msr = m.vcpu.RunData().MSR()
	if msr.Index != 0x40000000 || msr.Data != 0x8765432112345678 {
		t.Fatalf("WRMSR exit index %#x data %#x, want 0x40000000 / 0x8765432112345678", msr.Index, msr.Data)
	}
}

func TestKVMCPUIDLeaves(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sys := kvmtest.Require(t)
	cpuid, err := sys.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	// "Microsoft Hv" at 0x40000000, as vmm/hyperv will do.
	cpuid.Set(kvm.CPUIDEntry{Function: 0x40000000, EAX: 0x40000005, EBX: 0x7263694d, ECX: 0x666f736f, EDX: 0x76482074})
	code := []byte{
		0x66, 0xb8, 0x00, 0x00, 0x00, 0x40, // mov eax, 0x40000000
		0x0f, 0xa2, // cpuid
		0x66, 0x89, 0xd8, // mov eax, ebx
		0x66, 0xe7, 0x10, // out 0x10, eax
		0xf4,
	}
	m := newMachine(t, code, setup{irqchip: true, cpuid: cpuid})
	got, err := m.vcpu.GetCPUID2()
	if err != nil {
		t.Fatal(err)
	}
	if e := got.Get(0x40000000, 0); e == nil || e.EBX != 0x7263694d {
		t.Fatalf("GetCPUID2 leaf 0x40000000 = %+v", e)
	}
	if d := m.expectIO(t, kvm.IOOut, 0x10, 4); binary.LittleEndian.Uint32(d) != 0x7263694d {
		t.Fatalf("guest CPUID(0x40000000).EBX = %#x, want \"Micr\"", binary.LittleEndian.Uint32(d))
	}
}

func TestKVMIOEventFD(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	code := []byte{
		0xb0, 0x01, 0xe6, 0x30, // mov al,1; out 0x30,al   (matches: signals the eventfd)
		0xb0, 0x02, 0xe6, 0x30, // mov al,2; out 0x30,al   (no match: exits)
		0xf4,
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(efd) })
	reg := kvm.IOEventFD{Addr: 0x30, Len: 1, FD: int32(efd), Datamatch: 1, Flags: kvm.IOEventFDPIO | kvm.IOEventFDDatamatch}
	m := newMachine(t, code, setup{irqchip: true, before: func(t *testing.T, vm *kvm.VM) {
		if err := vm.IOEventFD(reg); err != nil {
			t.Fatal(err)
		}
	}})
	if d := m.expectIO(t, kvm.IOOut, 0x30, 1); d[0] != 2 {
		t.Fatalf("unmatched write data %#x, want 2", d[0])
	}
	var buf [8]byte
	if n, err := unix.Read(efd, buf[:]); err != nil || n != 8 || binary.LittleEndian.Uint64(buf[:]) != 1 {
		t.Fatalf("eventfd read = %d, %v, count %d; want one signal", n, err, binary.LittleEndian.Uint64(buf[:]))
	}
	reg.Flags |= kvm.IOEventFDDeassign
	if err := m.vm.IOEventFD(reg); err != nil {
		t.Fatal(err)
	}
	if err := m.vm.IOEventFD(reg); !errors.Is(err, unix.ENOENT) {
		t.Errorf("second deassign = %v, want ENOENT", err)
	}
}

func TestKVMInterrupts(t *testing.T) {
	m := newMachine(t, []byte{0xf4}, setup{irqchip: true})
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(efd) })
	if err := m.vm.IRQFD(efd, 5, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.vm.IRQFD(efd, 5, 0); !errors.Is(err, unix.EBUSY) {
		t.Errorf("assigning the same irqfd twice = %v, want EBUSY", err)
	}
	if err := m.vm.IRQFD(efd, 5, kvm.IRQFDDeassign); err != nil {
		t.Fatal(err)
	}
	if err := m.vm.IRQLine(4, true); err != nil {
		t.Fatal(err)
	}
	if err := m.vm.IRQLine(4, false); err != nil {
		t.Fatal(err)
	}
	delivered, err := m.vm.SignalMSI(0xfee00000, 0, 0x30)
	if err != nil {
		t.Fatal(err)
	}
	if delivered < 0 {
		t.Errorf("SignalMSI delivered = %d", delivered)
	}
	if err := m.vcpu.NMI(); err != nil {
		t.Fatal(err)
	}
}

func TestKVMVCPUState(t *testing.T) {
	m := newMachine(t, []byte{0xf4}, setup{irqchip: true})
	v := m.vcpu
	if v.ID() != 0 || v.FD() < 0 {
		t.Errorf("ID %d FD %d", v.ID(), v.FD())
	}

	regs := kvm.Regs{RAX: 1, RBX: 2, R15: 0xdead, RIP: 0x1234, RFLAGS: 0x202}
	if err := v.SetRegs(regs); err != nil {
		t.Fatal(err)
	}
	if got, err := v.GetRegs(); err != nil || got != regs {
		t.Fatalf("GetRegs = %+v, %v; want %+v", got, err, regs)
	}

	sregs, err := v.GetSregs()
	if err != nil {
		t.Fatal(err)
	}
	sregs.ES.Base, sregs.ES.Selector = 0x12340, 0x1234
	if err := v.SetSregs(sregs); err != nil {
		t.Fatal(err)
	}
	if got, err := v.GetSregs(); err != nil || got.ES.Base != 0x12340 || got.ES.Selector != 0x1234 {
		t.Fatalf("GetSregs ES = %+v, %v", got.ES, err)
	}

	const sysenterCS = 0x174
	if err := v.SetMSRs([]kvm.MSREntry{{Index: sysenterCS, Data: 0x10}}); err != nil {
		t.Fatal(err)
	}
	if got, err := v.GetMSRs([]uint32{sysenterCS}); err != nil || len(got) != 1 || got[0].Index != sysenterCS || got[0].Data != 0x10 {
		t.Fatalf("GetMSRs = %+v, %v; want 0x174 = 0x10", got, err)
	}
	if got, err := v.GetMSR(sysenterCS); err != nil || got != 0x10 {
		t.Fatalf("GetMSR = %#x, %v; want 0x10", got, err)
	}
	if _, err := v.GetMSR(0xdeadbeef); !errors.Is(err, kvm.ErrMSRsPartial) {
		t.Errorf("GetMSR of an unknown MSR = %v, want ErrMSRsPartial", err)
	}
	err = v.SetMSRs([]kvm.MSREntry{{Index: sysenterCS, Data: 0x20}, {Index: 0xdeadbeef, Data: 1}})
	if !errors.Is(err, kvm.ErrMSRsPartial) {
		t.Errorf("SetMSRs with unknown MSR = %v, want ErrMSRsPartial", err)
	}

	lapic, err := v.GetLAPIC()
	if err != nil {
		t.Fatal(err)
	}
	lapic.SetReg(kvm.LAPICRegTPR, 0x20)
	if err := v.SetLAPIC(lapic); err != nil {
		t.Fatal(err)
	}
	if got, err := v.GetLAPIC(); err != nil || got.Reg(kvm.LAPICRegTPR) != 0x20 {
		t.Fatalf("LAPIC TPR = %#x, %v; want 0x20", got.Reg(kvm.LAPICRegTPR), err)
	}

	if st, err := v.GetMPState(); err != nil || st != kvm.MPStateRunnable {
		t.Fatalf("GetMPState = %d, %v; want runnable", st, err)
	}
	if err := v.SetMPState(kvm.MPStateHalted); err != nil {
		t.Fatal(err)
	}
	if st, err := v.GetMPState(); err != nil || st != kvm.MPStateHalted {
		t.Fatalf("GetMPState after set = %d, %v; want halted", st, err)
	}

	ev, err := v.GetVCPUEvents()
	if err != nil {
		t.Fatal(err)
	}
	ev.NMI.Pending = 1
	ev.Flags = kvm.VCPUEventValidNMIPending
	if err := v.SetVCPUEvents(ev); err != nil {
		t.Fatal(err)
	}
	if got, err := v.GetVCPUEvents(); err != nil || got.NMI.Pending != 1 {
		t.Fatalf("GetVCPUEvents NMI = %+v, %v; want pending", got.NMI, err)
	}
}

func TestKVMTSCAndClock(t *testing.T) {
	m := newMachine(t, []byte{0xf4}, setup{irqchip: true})
	if n, _ := m.sys.CheckExtension(kvm.CapGetTSCKHz); n > 0 {
		khz, err := m.vcpu.GetTSCKHz()
		if err != nil {
			t.Fatal(err)
		}
		if khz == 0 {
			t.Fatal("GetTSCKHz = 0")
		}
		// Without TSC scaling only the current frequency is accepted.
		if err := m.vcpu.SetTSCKHz(khz); err != nil {
			t.Errorf("SetTSCKHz(current %d) = %v", khz, err)
		}
	}
	if err := m.vm.SetClock(5_000_000_000); err != nil {
		t.Fatal(err)
	}
	ns, err := m.vm.GetClock()
	if err != nil {
		t.Fatal(err)
	}
	if ns < 5_000_000_000 || ns > 60_000_000_000 {
		t.Errorf("GetClock after SetClock(5s) = %d ns", ns)
	}
}

func TestKVMGSIRouting(t *testing.T) {
	m := newMachine(t, []byte{0xf4}, setup{irqchip: true})
	var routes []kvm.IRQRoute
	for pin := uint32(0); pin < 24; pin++ {
		routes = append(routes, kvm.IRQRoute{GSI: pin, Type: kvm.IRQRoutingIRQChip, IRQChip: kvm.IRQChipIOAPIC, Pin: pin})
	}
	routes = append(routes, kvm.IRQRoute{GSI: 24, Type: kvm.IRQRoutingMSI, AddressLo: 0xfee00000, Data: 0x31})
	if err := m.vm.SetGSIRouting(routes); err != nil {
		t.Fatal(err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(efd) })
	// An irqfd on the MSI route is what virtio devices use to interrupt.
	if err := m.vm.IRQFD(efd, 24, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.vm.IRQLine(4, true); err != nil {
		t.Fatalf("IRQLine through the new IOAPIC route: %v", err)
	}
	// The kernel rejects an irqchip pin beyond the IOAPIC's 24.
	bad := []kvm.IRQRoute{{GSI: 0, Type: kvm.IRQRoutingIRQChip, IRQChip: kvm.IRQChipIOAPIC, Pin: 99}}
	if err := m.vm.SetGSIRouting(bad); !errors.Is(err, unix.EINVAL) {
		t.Errorf("route to IOAPIC pin 99 = %v, want EINVAL", err)
	}
}

func TestKVMTSCOffsetAttr(t *testing.T) {
	m := newMachine(t, []byte{0xf4}, setup{irqchip: true})
	if n, _ := m.sys.CheckExtension(kvm.CapVCPUAttributes); n == 0 {
		testenv.Skip(t, "KVM_CAP_VCPU_ATTRIBUTES not offered by this host")
	}
	ok, err := m.vcpu.HasDeviceAttr(kvm.VCPUTSCCtrl, kvm.VCPUTSCOffset)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		testenv.Skip(t, "vCPU has no TSC offset attribute on this host")
	}
	if ok, err := m.vcpu.HasDeviceAttr(kvm.VCPUTSCCtrl, 12345); err != nil || ok {
		t.Errorf("HasDeviceAttr(unknown) = %t, %v; want false", ok, err)
	}
	initial, err := m.vcpu.GetDeviceAttr(kvm.VCPUTSCCtrl, kvm.VCPUTSCOffset)
	if err != nil {
		t.Fatal(err)
	}
	const offset = 0x1000000
	if err := m.vcpu.SetDeviceAttr(kvm.VCPUTSCCtrl, kvm.VCPUTSCOffset, offset); err != nil {
		t.Fatal(err)
	}
	got, err := m.vcpu.GetDeviceAttr(kvm.VCPUTSCCtrl, kvm.VCPUTSCOffset)
	if err != nil {
		t.Fatal(err)
	}
	if initial == 0 && got == 0 {
		// Seen on the PVM hosts: the attribute exists, reads 0 and drops
		// writes (a C program doing the same ioctls sees the same).
		// The ioctls above succeeded, which is what this host can show.
		t.Logf("!!! host ignores KVM_VCPU_TSC_OFFSET (reads 0, writes dropped): round trip not checkable here !!!")
		return
	}
	if got == offset {
		return
	}
	// Where the host kernel has given up on its TSC (the nested test host
	// under a loaded TCG often does), KVM recomputes the offset on every
	// vcpu_load, the ioctl's own included, to keep the guest's TSC moving
	// with time: the read-back then differs by the time since the write.
	cs, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
	if err != nil || strings.TrimSpace(string(cs)) == "tsc" {
		t.Fatalf("TSC offset = %#x, want %#x (host clocksource %q)", got, offset, strings.TrimSpace(string(cs)))
	}
	khz, err := m.vcpu.GetTSCKHz()
	if err != nil {
		t.Fatal(err)
	}
	drift := int64(got - offset)
	if drift < 0 {
		drift = -drift
	}
	if drift > int64(khz)*1000 {
		t.Errorf("TSC offset = %#x, want %#x within a second's ticks (%d kHz) on a host whose TSC is unstable", got, offset, khz)
	}
	t.Logf("host clocksource %s: TSC offset read back %#x after writing %#x", strings.TrimSpace(string(cs)), got, offset)
}

// TestKVMKickRunningVCPU checks the cancellation recipe vmm relies on: set
// immediate_exit, then signal the vCPU thread. Whether the signal lands
// while the guest runs or before KVM_RUN is entered, Run returns EINTR.
func TestKVMKickRunningVCPU(t *testing.T) {
	// out 0x10,al; jmp $ (spins in the guest until kicked)
	m := newMachine(t, []byte{0xe6, 0x10, 0xeb, 0xfe}, setup{irqchip: true})
	type result struct {
		exit uint32
		err  error
	}
	tid := make(chan int)
	done := make(chan result)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := m.vcpu.Run(); err != nil {
			done <- result{err: err}
			return
		}
		if r := m.vcpu.RunData().ExitReason; r != kvm.ExitIO {
			done <- result{exit: r}
			return
		}
		tid <- unix.Gettid()
		for {
			err := m.vcpu.Run()
			if errors.Is(err, unix.EAGAIN) {
				continue
			}
			done <- result{exit: m.vcpu.RunData().ExitReason, err: err}
			return
		}
	}()
	var thread int
	select {
	case thread = <-tid:
	case r := <-done:
		t.Fatalf("first run: exit %s, err %v; want the IO exit", kvm.ExitReasonName(r.exit), r.err)
	}
	m.vcpu.RunData().ImmediateExit = 1
	if err := unix.Tgkill(unix.Getpid(), thread, unix.SIGURG); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if !errors.Is(r.err, unix.EINTR) {
		t.Fatalf("kicked Run = exit %s, err %v; want EINTR", kvm.ExitReasonName(r.exit), r.err)
	}
}

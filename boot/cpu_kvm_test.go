package boot_test

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/boot"
	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/layout"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// These tests enter tiny guests on the host's /dev/kvm with the state
// SetupCPU builds, and check from inside the guest that the segments and the
// identity map are what the boot protocols promise. Guest RAM ends at 64 MiB;
// reads above it exit as MMIO with the physical address, which shows the page
// tables translate identically all the way up to 4 GiB.

const guestRAM = 64 << 20

type ram []byte

func (m ram) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || uint64(off) > uint64(len(m)) || uint64(len(p)) > uint64(len(m))-uint64(off) {
		return 0, fmt.Errorf("write [%#x, +%#x) beyond RAM", off, len(p))
	}
	return copy(m[off:], p), nil
}

// access is one port or MMIO exit the guest made.
type access struct {
	mmio  bool
	addr  uint64
	write bool
	data  byte
}

// runGuest runs code placed at addr and entered as e, answers MMIO reads with
// mmioValue, and returns the guest's accesses up to its HLT, and RAM.
func runGuest(t *testing.T, e boot.Entry, addr uint64, code []byte, mmioValue byte) ([]access, ram) {
	t.Helper()
	sys := kvmtest.Require(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	vm, err := sys.CreateVM()
	require.NoError(t, err)
	t.Cleanup(func() { _ = vm.Close() })
	require.NoError(t, vm.SetTSSAddr(layout.KVMTSSAddr))
	mem, err := unix.Mmap(-1, 0, guestRAM, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	t.Cleanup(func() { _ = unix.Munmap(mem) })
	require.NoError(t, vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{
		MemorySize: guestRAM, UserspaceAddr: uint64(uintptr(unsafe.Pointer(&mem[0]))),
	}))
	copy(mem[addr:], code)
	mem[0x1234] = 0x77 // read by the real-mode guest through DS

	mmapSize, err := sys.VCPUMmapSize()
	require.NoError(t, err)
	v, err := vm.CreateVCPU(0, mmapSize)
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })
	// Long mode needs a guest CPUID that has it.
	cpuid, err := sys.SupportedCPUID()
	require.NoError(t, err)
	require.NoError(t, v.SetCPUID2(cpuid))

	sregs, err := v.GetSregs()
	require.NoError(t, err)
	var regs kvm.Regs
	require.NoError(t, boot.SetupCPU(ram(mem), e, &sregs, &regs))
	require.NoError(t, v.SetSregs(sregs))
	require.NoError(t, v.SetRegs(regs))

	var got []access
	run := v.RunData()
	for range 100 {
		require.NoError(t, v.Run())
		switch run.ExitReason {
		case kvm.ExitIO:
			dir, size, port, count, _ := run.IO()
			require.Equal(t, uint8(1), size)
			require.Equal(t, uint32(1), count)
			got = append(got, access{addr: uint64(port), write: dir == 1, data: v.IOData()[0]})
		case kvm.ExitMMIO:
			addr, data, n, write := run.MMIO()
			require.Equal(t, uint32(1), n)
			if !write {
				data[0] = mmioValue
			}
			got = append(got, access{mmio: true, addr: addr, write: write, data: data[0]})
		case kvm.ExitHLT:
			return got, mem
		default:
			r, _ := v.GetRegs()
			t.Fatalf("exit %s at RIP %#x after %v", kvm.ExitReasonName(run.ExitReason), r.RIP, got)
		}
	}
	t.Fatalf("no HLT after %v", got)
	return nil, nil
}

func addr64(a uint64) []byte { return binary.LittleEndian.AppendUint64(nil, a) }
func addr32(a uint32) []byte { return binary.LittleEndian.AppendUint32(nil, a) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestKVMLong64Entry(t *testing.T) {
	code := cat(
		[]byte{0xa0}, addr64(0xd0000123), // mov al, [0xd0000123]: MMIO through the 4th page directory
		[]byte{0xe6, 0x80},              // out 0x80, al
		[]byte{0xa2}, addr64(0x3ff_f00), // mov [0x3ff_f00], al: RAM near the top, 2 MiB page 31
		[]byte{0x8c, 0xc8, 0xe6, 0x81},                               // mov eax, cs; out 0x81, al
		[]byte{0x8c, 0xd0, 0xe6, 0x82},                               // mov eax, ss; out 0x82, al
		[]byte{0x89, 0xf0, 0xe6, 0x83},                               // mov eax, esi; out 0x83, al
		[]byte{0x48, 0x89, 0xf0, 0x48, 0xc1, 0xe8, 0x20, 0xe6, 0x84}, // mov rax, rsi; shr rax, 32; out 0x84, al (64-bit operands work)
		[]byte{0xf4}, // hlt
	)
	got, mem := runGuest(t, boot.Entry{Mode: boot.Long64, IP: layout.HighMemory, RSI: 0x12_0000_7000}, layout.HighMemory, code, 0x5a)
	require.Equal(t, []access{
		{mmio: true, addr: 0xd0000123, data: 0x5a},
		{addr: 0x80, write: true, data: 0x5a},
		{addr: 0x81, write: true, data: boot.SelectorCode},
		{addr: 0x82, write: true, data: boot.SelectorData},
		{addr: 0x83, write: true, data: 0x00},
		{addr: 0x84, write: true, data: 0x12},
	}, got)
	require.Equal(t, byte(0x5a), mem[0x3ff_f00])
}

func TestKVMProtected32Entry(t *testing.T) {
	code := cat(
		[]byte{0xa0}, addr32(0xfe000042), // mov al, [0xfe000042]: paging off, straight to MMIO
		[]byte{0xe6, 0x80},              // out 0x80, al
		[]byte{0xa2}, addr32(0x2000000), // mov [32 MiB], al
		[]byte{0x8c, 0xc8, 0xe6, 0x81},       // mov eax, cs; out 0x81, al
		[]byte{0x8c, 0xd8, 0xe6, 0x82},       // mov eax, ds; out 0x82, al
		[]byte{0x89, 0xd8, 0xe6, 0x83},       // mov eax, ebx; out 0x83, al
		[]byte{0xc1, 0xe8, 0x18, 0xe6, 0x84}, // shr eax, 24; out 0x84, al (32-bit operand size by default)
		[]byte{0xf4},                         // hlt
	)
	got, mem := runGuest(t, boot.Entry{Mode: boot.Protected32, IP: layout.HighMemory, RBX: 0x2b006000}, layout.HighMemory, code, 0xa5)
	require.Equal(t, []access{
		{mmio: true, addr: 0xfe000042, data: 0xa5},
		{addr: 0x80, write: true, data: 0xa5},
		{addr: 0x81, write: true, data: boot.SelectorCode},
		{addr: 0x82, write: true, data: boot.SelectorData},
		{addr: 0x83, write: true, data: 0x00},
		{addr: 0x84, write: true, data: 0x2b},
	}, got)
	require.Equal(t, byte(0xa5), mem[0x2000000])
}

func TestKVMRealModeEntry(t *testing.T) {
	code := []byte{
		0x8c, 0xc8, 0xe6, 0x80, // mov ax, cs; out 0x80, al
		0x88, 0xe0, 0xe6, 0x81, // mov al, ah; out 0x81, al
		0xa0, 0x34, 0x12, // mov al, [0x1234]: DS base 0
		0xe6, 0x82, // out 0x82, al
		0xf4, // hlt
	}
	// CS 0x1000 has base 0x10000; the byte at DS:0x1234 shows DS has base 0.
	got, _ := runGuest(t, boot.Entry{Mode: boot.RealMode, CS: 0x1000, IP: 0x20}, 0x10020, code, 0)
	require.Equal(t, []access{
		{addr: 0x80, write: true, data: 0x00},
		{addr: 0x81, write: true, data: 0x10},
		{addr: 0x82, write: true, data: 0x77},
	}, got)
}

package vmm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/boot"
	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/internal/testimage"
)

// These tests run tiny guests, written as machine code, on the host's
// /dev/kvm. Our hosts' KVM (PVM) emulates guest kernel code, so the guests use
// only port I/O, MMIO, CPUID, moves and HLT: no FPU, no SSE, no faults.

// testMemory is guest RAM for the tiny guests; they read 0x10000000, above
// it, as unclaimed MMIO.
const testMemory = 64 << 20

type guestRun struct {
	res     Result
	console []byte
}

func runGuest(t *testing.T, cfg Config) guestRun {
	t.Helper()
	kvmtest.Require(t)
	var out bytes.Buffer
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	if cfg.Memory == 0 {
		cfg.Memory = testMemory
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 20 * time.Second
	}
	cfg.ConsoleOut = &out
	m, err := New(cfg, nil)
	require.NoError(t, err)
	defer m.Close()
	res := m.Run(context.Background())
	return guestRun{res: res, console: out.Bytes()}
}

func realModeProgram(code []byte) *Program {
	return &Program{Addr: 0x7c00, Code: code, Entry: boot.Entry{Mode: boot.RealMode, CS: 0, IP: 0x7c00}}
}

func TestKVMRealModeSerialAndDebugExit(t *testing.T) {
	code := []byte{
		0xba, 0xf8, 0x03, // mov dx, 0x3f8 (COM1 THR)
		0xb0, 'H', 0xee, // mov al, 'H'; out dx, al
		0xb0, 'i', 0xee, // mov al, 'i'; out dx, al
		0xb0, '\n', 0xee, // mov al, '\n'; out dx, al
		0xe4, 0x99, // in al, 0x99 (no device: reads all ones)
		0xee,       // out dx, al
		0xb0, 0x21, // mov al, 0x21
		0xe6, 0xf4, // out 0xf4, al (debug exit: code 2*0x21+1)
		0xf4, // hlt (not reached)
	}
	r := runGuest(t, Config{Program: realModeProgram(code)})
	require.Equal(t, StopDebugExit, r.res.Reason.Kind, r.res.Reason.String())
	require.Equal(t, 0x43, r.res.Reason.ExitCode())
	require.Equal(t, []byte("Hi\n\xff"), r.console)
	require.Equal(t, uint64(1), r.res.UnclaimedPIO.UnclaimedReads)
	require.NotZero(t, r.res.FirstOutput)
	require.GreaterOrEqual(t, r.res.Exits["io"], uint64(5))
}

func TestKVMRealModeI8042Reset(t *testing.T) {
	code := []byte{
		0xb0, 0xfe, // mov al, 0xfe (pulse reset line)
		0xe6, 0x64, // out 0x64, al
		0xeb, 0xfe, // jmp $ (the VM must stop before this matters)
	}
	r := runGuest(t, Config{Program: realModeProgram(code)})
	require.Equal(t, StopReset, r.res.Reason.Kind, r.res.Reason.String())
	require.Equal(t, "i8042", r.res.Reason.Source)
	require.Equal(t, ExitReset, r.res.Reason.ExitCode())
}

// TestKVMResetControlResets: the PIIX3 reset control register (0xCF9), as
// OVMF's ResetSystem and Linux's reboot=pci write it; a dword write to 0xCF8
// (the PCI address register) does not reset.
func TestKVMResetControlResets(t *testing.T) {
	code := []byte{
		0x66, 0xb8, 0x00, 0x06, 0x00, 0x80, // mov eax, 0x80000600
		0xba, 0xf8, 0x0c, // mov dx, 0xcf8
		0x66, 0xef, // out dx, eax (address register: no reset)
		0xb0, 0x02, // mov al, 0x02 (system reset bit alone: no reset)
		0x42,       // inc dx (0xcf9)
		0xee,       // out dx, al
		0xb0, 0x06, // mov al, 0x06
		0xee,       // out dx, al
		0xeb, 0xfe, // jmp $
	}
	r := runGuest(t, Config{Program: realModeProgram(code)})
	require.Equal(t, StopReset, r.res.Reason.Kind, r.res.Reason.String())
	require.Equal(t, "port 0xcf9", r.res.Reason.Source)
	require.Equal(t, ExitReset, r.res.Reason.ExitCode())
}

// TestKVMResetVectorResets: a guest that jumps to the reset vector (what Linux's
// BIOS reboot does) finds a stub there that resets the machine.
func TestKVMResetVectorResets(t *testing.T) {
	code := []byte{0xea, 0xf0, 0xff, 0x00, 0xf0} // jmp far F000:FFF0
	r := runGuest(t, Config{Program: realModeProgram(code)})
	require.Equal(t, StopReset, r.res.Reason.Kind, r.res.Reason.String())
	require.Equal(t, "i8042", r.res.Reason.Source)
}

func TestKVMTimeoutStopsSpinningGuest(t *testing.T) {
	r := runGuest(t, Config{Program: realModeProgram([]byte{0xeb, 0xfe}), Timeout: 300 * time.Millisecond, CPUs: 2})
	require.Equal(t, StopTimeout, r.res.Reason.Kind, r.res.Reason.String())
	require.Equal(t, ExitTimeout, r.res.Reason.ExitCode())
}

func TestKVMStopFromOutside(t *testing.T) {
	kvmtest.Require(t)
	m, err := New(Config{Program: realModeProgram([]byte{0xeb, 0xfe}), CPUs: 1, Memory: testMemory}, nil)
	require.NoError(t, err)
	defer m.Close()
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan Result)
	go func() { done <- m.Run(ctx) }()
	cancel(errors.New("test says stop"))
	select {
	case res := <-done:
		require.Equal(t, StopInterrupted, res.Reason.Kind)
		require.Contains(t, res.Reason.Detail, "test says stop")
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestKVMMultibootProtectedModeEntry(t *testing.T) {
	code := []byte{
		0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0x3d, 0x02, 0xb0, 0xad, 0x2b, // cmp eax, 0x2badb002 (multiboot magic)
		0x75, 0x19, // jne fail
		0x8b, 0x43, 0x08, // mov eax, [ebx+8] (mem_upper, KiB)
		0xee,             // out dx, al
		0xc1, 0xe8, 0x08, // shr eax, 8
		0xee,             // out dx, al
		0xc1, 0xe8, 0x08, // shr eax, 8
		0xee,                         // out dx, al
		0xa1, 0x00, 0x00, 0x00, 0x10, // mov eax, [0x10000000] (unclaimed MMIO)
		0xee,       // out dx, al
		0x8a, 0x03, // mov al, [ebx] (flags, low byte)
		0x24, 0x01, // and al, 1 (MEM valid)
		0xe6, 0xf4, // out 0xf4, al -> exit code 3
		0xf4, // hlt
		// fail:
		0xb0, 0x7f, // mov al, 0x7f
		0xe6, 0xf4, // out 0xf4, al -> exit code 255
		0xf4, // hlt
	}
	require.Equal(t, byte(len(code)-5-11), code[10], "jne displacement")
	r := runMultiboot(t, testimage.Multiboot(code))
	require.Equal(t, StopDebugExit, r.res.Reason.Kind, r.res.Reason.String())
	require.Equal(t, 3, r.res.Reason.ExitCode(), "magic and MEM flag")
	upper := uint32(testMemory-1<<20) / 1024
	require.Equal(t, []byte{byte(upper), byte(upper >> 8), byte(upper >> 16), 0xff}, r.console)
	require.Equal(t, uint64(1), r.res.UnclaimedMMIO.UnclaimedReads)
}

func runMultiboot(t *testing.T, kernel []byte) guestRun {
	path := writeTemp(t, "multiboot.bin", kernel)
	return runGuest(t, Config{Kernel: path, Cmdline: "mb"})
}

func TestKVMLinux64BitEntry(t *testing.T) {
	code := []byte{
		0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xb0, '6', 0xee, // mov al, '6'; out dx, al
		0x8b, 0x86, 0x28, 0x02, 0x00, 0x00, // mov eax, [rsi+0x228] (cmd_line_ptr)
		0x8a, 0x00, // mov al, [rax] (first byte of the command line)
		0xee,                               // out dx, al
		0x8a, 0x86, 0xe8, 0x01, 0x00, 0x00, // mov al, [rsi+0x1e8] (e820_entries)
		0xee,       // out dx, al
		0x31, 0xc0, // xor eax, eax
		0x0f, 0xa2, // cpuid (leaf 0: vendor; clobbers edx)
		0x89, 0xd8, // mov eax, ebx
		0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xee,                                     // out dx, al
		0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0x10, // mov eax, [0x10000000] (unclaimed MMIO)
		0xee,       // out dx, al
		0xb0, 0x10, // mov al, 0x10
		0xe6, 0xf4, // out 0xf4, al -> exit code 33
		0xf4, // hlt
	}
	path := writeTemp(t, "bzImage", testimage.BzImage64(code))
	r := runGuest(t, Config{Kernel: path, Cmdline: "console=ttyS0"})
	require.Equal(t, StopDebugExit, r.res.Reason.Kind, r.res.Reason.String())
	require.Equal(t, 33, r.res.Reason.ExitCode())
	require.Len(t, r.console, 5)
	require.Equal(t, byte('6'), r.console[0])
	require.Equal(t, byte('c'), r.console[1], "cmdline reached the guest")
	require.GreaterOrEqual(t, r.console[2], byte(3), "e820 entries")
	require.Contains(t, []byte{'G', 'A'}, r.console[3], "CPUID vendor (GenuineIntel/AuthenticAMD)")
	require.Equal(t, byte(0xff), r.console[4], "unclaimed MMIO reads all ones")
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := t.TempDir() + "/" + name
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return path
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/exitbench"
	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/internal/testimage"
	"github.com/vmmdev/vmm/vmm"
)

// guestFWCfgCPUs reads fw_cfg's signature and FW_CFG_NB_CPUS through ports
// 0x510/0x511 and exits with the CPU count (0x7f if the signature is not
// "QEMU" or the count does not fit a byte).
func guestFWCfgCPUs() []byte {
	return newAsm().
		emit(0x66, 0xba, 0x10, 0x05, 0x66, 0x31, 0xc0, 0x66, 0xef). // mov dx, 0x510; xor ax, ax; out dx, ax (signature)
		emit(0x66, 0xba, 0x11, 0x05).                               // mov dx, 0x511
		emit(0x31, 0xdb, 0xb9, 0x04, 0x00, 0x00, 0x00).             // xor ebx, ebx; mov ecx, 4
		label("sig").
		emit(0xec, 0x88, 0xc3, 0xc1, 0xcb, 0x08). // in al, dx; mov bl, al; ror ebx, 8
		j(0xe2, "sig").
		emit(0x81, 0xfb).emit(le32(0x554d4551)...). // cmp ebx, "QEMU"
		j(0x75, "fail").
		emit(0x66, 0xba, 0x10, 0x05, 0x66, 0xb8, 0x05, 0x00, 0x66, 0xef). // mov dx, 0x510; mov ax, 5; out dx, ax (NB_CPUS)
		emit(0x66, 0xba, 0x11, 0x05).                                     // mov dx, 0x511
		emit(0xec, 0x88, 0xc3, 0xec, 0x88, 0xc7).                         // in al, dx; mov bl, al; in al, dx; mov bh, al
		emit(0x84, 0xff).                                                 // test bh, bh
		j(0x75, "fail").
		emit(0x88, 0xd8, 0xe6, 0xf4, 0xf4). // mov al, bl; out 0xf4, al; hlt
		label("fail").
		debugExit(0x7f).
		bytes()
}

// TestKVMFWCfgDirectBoot: fw_cfg answers in direct boot, with the CPU count.
func TestKVMFWCfgDirectBoot(t *testing.T) {
	r := runVMM(t, guestFWCfgCPUs(), "--cpus", "3", "--timeout", "20s")
	require.Equal(t, 2*3+1, r.code, "stderr: %s", r.stderr)
	require.Equal(t, "debug-exit port", r.report.ExitSource)
}

// guestArgv0 is 32-bit multiboot code: it prints the first word of the
// multiboot command line (argv[0]) and a newline, then exits with 0x2a.
func guestArgv0() []byte {
	return newAsm().
		emit(0x8b, 0x73, 0x10).       // mov esi, [ebx+16] (cmdline)
		emit(0x66, 0xba, 0xf8, 0x03). // mov dx, 0x3f8
		label("loop").
		emit(0x8a, 0x06, 0x84, 0xc0). // mov al, [esi]; test al, al
		j(0x74, "done").
		emit(0x3c, ' '). // cmp al, ' '
		j(0x74, "done").
		emit(0xee, 0x46). // out dx, al; inc esi
		j(0xeb, "loop").
		label("done").
		emit(0xb0, '\n', 0xee). // mov al, '\n'; out dx, al
		debugExit(0x2a).
		bytes()
}

// TestKVMMultibootLowSegment boots a multiboot ELF whose only segment is at
// 0x8000 (as kvm-unit-tests' realmode.flat) and that prints its argv[0]: the
// kernel's path, as GRUB and QEMU pass it.
func TestKVMMultibootLowSegment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "low.elf")
	require.NoError(t, os.WriteFile(path, testimage.MultibootELF(0x8000, guestArgv0()), 0o644))
	r := runVMMKernel(t, path, "--cmdline", "first second", "--timeout", "20s")
	require.Equal(t, 2*0x2a+1, r.code, "stderr: %s", r.stderr)
	require.Equal(t, path+"\n", r.stdout)
}

// TestKVMExitBenchGuest runs `bench -exits`' guest as the benchmark does
// (vmm's own timers): every row completes its batches, each with a pace,
// and the PIO and MMIO rows do leave the guest for vmm.
func TestKVMExitBenchGuest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exitbench.elf")
	require.NoError(t, os.WriteFile(path, exitbench.ELF(), 0o644))
	r := runVMMKernel(t, path, "--testdev", "--hyperv", "all", "--timeout", "120s")
	require.Equal(t, 2*exitbench.ExitValue+1, r.code, "stderr: %s\nstdout: %s", r.stderr, r.stdout)
	batches, done := exitbench.Parse(strings.Split(r.stdout, "\n"))
	require.True(t, done, r.stdout)
	for _, row := range exitbench.Rows {
		require.Len(t, batches[row.Name], exitbench.Batches, row.Name)
		for _, b := range batches[row.Name] {
			require.Positive(t, b.Cycles, row.Name)
			require.Positive(t, b.Pace, row.Name)
		}
	}
	require.GreaterOrEqual(t, r.report.Exits["io"], uint64(exitbench.Batches*exitbench.Iterations))
	require.GreaterOrEqual(t, r.report.Exits["mmio"], uint64(exitbench.Batches*exitbench.Iterations))
}

// guestCPUIDBits exits with CPUID leaf 1 ECX's x2APIC (bit 0 of the exit
// value), CX16 (bit 1), POPCNT (bit 2) and hypervisor (bit 3) bits.
func guestCPUIDBits() []byte {
	a := newAsm().emit(0xb8, 1, 0, 0, 0, 0x31, 0xc9, 0x0f, 0xa2, 0x31, 0xdb) // mov eax, 1; xor ecx, ecx; cpuid; xor ebx, ebx
	for _, bit := range []byte{31, 23, 13, 21} {
		a.emit(0xd1, 0xe3, 0x0f, 0xba, 0xe1, bit, 0x83, 0xd3, 0x00) // shl ebx, 1; bt ecx, bit; adc ebx, 0
	}
	return a.emit(0x89, 0xd8, 0xe6, 0xf4, 0xf4).bytes() // mov eax, ebx; out 0xf4, al; hlt
}

// TestKVMCPUSpec reads CPUID under several --cpu specs, against the host's.
func TestKVMCPUSpec(t *testing.T) {
	const x2apic, cx16, popcnt, hypervisor = 1, 2, 4, 8
	bits := func(spec string) int {
		r := runVMM(t, guestCPUIDBits(), "--cpu", spec, "--timeout", "20s")
		require.Equal(t, "debug-exit port", r.report.ExitSource, "%s: stderr: %s", spec, r.stderr)
		return (r.code - 1) / 2
	}
	host := bits("host")
	require.NotZero(t, host&hypervisor)
	require.Equal(t, host&^x2apic, bits("host,-x2apic"))
	// PVM hosts answer guest CPUID with bits of the hardware's own that
	// KVM does not list (POPCNT among them): compare only bits the table
	// decides.
	v1 := bits("x86-64-v1")
	require.Zero(t, v1&cx16, "v1 lacks CX16")
	require.Equal(t, host&(x2apic|hypervisor), v1&(x2apic|hypervisor), "x2APIC is the host's")
	if vmm.Probe(kvmtest.Path).Virtualization != vmm.VirtPVM {
		require.Zero(t, v1&popcnt, "v1 lacks POPCNT")
	}

	r := runVMM(t, guestCPUIDBits(), "--cpu", "host,+avx512f", "--timeout", "20s")
	require.Equal(t, 1, r.code)
	require.Equal(t, "vmm run: invalid configuration: --cpu host,+avx512f: feature not offered by this host's KVM: +avx512f (CPUID 0x7.0 EBX bit 16)\n", r.stderr)
}

// guestPCTestdev exercises pc-testdev and exits with a bit per check that
// passed: 1 the scratch register through both windows, 2 the MMIO window
// reads back, 4 a page keeps its contents across a flush.
func guestPCTestdev() []byte {
	return newAsm().
		emit(0x66, 0xba, 0xe0, 0x00, 0xb8).emit(le32(0x11223344)...).emit(0xef). // mov dx, 0xe0; mov eax, ...; out dx, eax
		emit(0x66, 0xba, 0xe9, 0x00, 0xb0, 0xaa, 0xee).                          // mov dx, 0xe9; mov al, 0xaa; out dx, al
		emit(0x66, 0xba, 0xe0, 0x00, 0xed, 0x31, 0xdb).                          // mov dx, 0xe0; in eax, dx; xor ebx, ebx
		emit(0x3d).emit(le32(0x1122aa44)...).                                    // cmp eax, 0x1122aa44
		j(0x75, "mmio").
		emit(0x83, 0xcb, 0x01). // or ebx, 1
		label("mmio").
		emit(0xbf).emit(le32(0xff000100)...).             // mov edi, 0xff000100
		emit(0xc7, 0x07).emit(le32(0xdeadbeef)...).       // mov dword [rdi], 0xdeadbeef
		emit(0x8b, 0x07, 0x3d).emit(le32(0xdeadbeef)...). // mov eax, [rdi]; cmp eax, 0xdeadbeef
		j(0x75, "flush").
		emit(0x83, 0xcb, 0x02). // or ebx, 2
		label("flush").
		emit(0xbf).emit(le32(0x200000)...).               // mov edi, 0x200000
		emit(0xc7, 0x07).emit(le32(0x5a5a1234)...).       // mov dword [rdi], 0x5a5a1234
		emit(0x89, 0xf8, 0x66, 0xba, 0xe4, 0x00, 0xef).   // mov eax, edi; mov dx, 0xe4; out dx, eax
		emit(0x8b, 0x07, 0x3d).emit(le32(0x5a5a1234)...). // mov eax, [rdi]; cmp eax, 0x5a5a1234
		j(0x75, "done").
		emit(0x83, 0xcb, 0x04). // or ebx, 4
		label("done").
		emit(0x89, 0xd8, 0xe6, 0xf4, 0xf4). // mov eax, ebx; out 0xf4, al; hlt
		bytes()
}

func TestKVMPCTestdev(t *testing.T) {
	r := runVMM(t, guestPCTestdev(), "--testdev", "--timeout", "20s")
	require.Equal(t, 2*7+1, r.code, "stderr: %s", r.stderr)
	// Without --testdev the ports and window are unclaimed.
	r = runVMM(t, guestPCTestdev(), "--timeout", "20s")
	require.Equal(t, 2*4+1, r.code, "stderr: %s", r.stderr)
}

// TestKVMHyperVTestdev: with --hyperv synic, --testdev adds hyperv-testdev
// at 0x3000 beside pc-testdev and the hypercall port (a route create and
// destroy, then exit 3).
func TestKVMHyperVTestdev(t *testing.T) {
	code := newAsm().
		emit(0x66, 0xba, 0x00, 0x30, 0xb8).emit(le32(1<<16 | 2)...).emit(0xef). // mov dx, 0x3000; mov eax, create(vp 0, sint 2); out dx, eax
		emit(0xb8).emit(le32(2<<16 | 2)...).emit(0xef).                         // destroy
		debugExit(3).bytes()
	r := runVMM(t, code, "--testdev", "--hyperv", "synic,vpindex", "--timeout", "20s")
	require.Equal(t, 7, r.code, "stderr: %s", r.stderr)
}

// guestPCITestdev runs pci-testdev's tests as kvm-unit-tests'
// lib/pci-testdev.c does (start test N through the header, check its count
// is 0, write its data 16 times at its offset), on both BARs of 00:01.0,
// and exits with the number of tests whose count then read exactly 16:
// the no-eventfd tests count exits, the eventfd ones KVM's ioeventfds.
func guestPCITestdev() []byte {
	return newAsm().
		emit(0x66, 0xba, 0xf8, 0x0c, 0xb8).emit(le32(0x80000810)...).emit(0xef). // mov dx, 0xcf8; mov eax, BAR 0 of 00:01.0; out dx, eax
		emit(0x66, 0xba, 0xfc, 0x0c, 0xed, 0x83, 0xe0, 0xf0, 0x89, 0xc6).        // mov dx, 0xcfc; in eax, dx; and eax, ~0xf; mov esi, eax
		emit(0x66, 0xba, 0xf8, 0x0c, 0xb8).emit(le32(0x80000814)...).emit(0xef). // BAR 1
		emit(0x66, 0xba, 0xfc, 0x0c, 0xed, 0x25).emit(le32(0xfffc)...).          // in eax, dx; and eax, 0xfffc
		emit(0x89, 0xc5, 0x31, 0xdb, 0x31, 0xc9).                                // mov ebp, eax; xor ebx, ebx; xor ecx, ecx
		label("mloop").
		emit(0x88, 0x0e).                   // mov [rsi], cl: start test ecx
		emit(0x8b, 0x46, 0x0c, 0x85, 0xc0). // mov eax, [rsi+12]; test eax, eax
		j(0x75, "mnext").
		emit(0x8b, 0x7e, 0x04, 0x8a, 0x46, 0x08).             // mov edi, [rsi+4]; mov al, [rsi+8]
		emit(0x41, 0xb8).emit(le32(16)...).                   // mov r8d, 16
		label("mw").emit(0x88, 0x04, 0x3e, 0x41, 0xff, 0xc8). // mov [rsi+rdi], al; dec r8d
		j(0x75, "mw").
		emit(0x83, 0x7e, 0x0c, 0x10). // cmp dword [rsi+12], 16
		j(0x75, "mnext").
		emit(0xff, 0xc3). // inc ebx
		label("mnext").
		emit(0xff, 0xc1, 0x83, 0xf9, 0x03). // inc ecx; cmp ecx, 3
		j(0x72, "mloop").
		emit(0x31, 0xc9). // xor ecx, ecx
		label("ploop").
		emit(0x89, 0xea, 0x88, 0xc8, 0xee).       // mov edx, ebp; mov al, cl; out dx, al: start test ecx
		emit(0x8d, 0x55, 0x0c, 0xed, 0x85, 0xc0). // lea edx, [rbp+12]; in eax, dx; test eax, eax
		j(0x75, "pnext").
		emit(0x8d, 0x55, 0x04, 0xed, 0x89, 0xc7). // lea edx, [rbp+4]; in eax, dx; mov edi, eax
		emit(0x8d, 0x55, 0x08, 0xec).             // lea edx, [rbp+8]; in al, dx
		emit(0x8d, 0x54, 0x3d, 0x00).             // lea edx, [rbp+rdi]
		emit(0x41, 0xb8).emit(le32(16)...).       // mov r8d, 16
		label("pw").emit(0xee, 0x41, 0xff, 0xc8). // out dx, al; dec r8d
		j(0x75, "pw").
		emit(0x8d, 0x55, 0x0c, 0xed, 0x83, 0xf8, 0x10). // lea edx, [rbp+12]; in eax, dx; cmp eax, 16
		j(0x75, "pnext").
		emit(0xff, 0xc3). // inc ebx
		label("pnext").
		emit(0xff, 0xc1, 0x83, 0xf9, 0x03). // inc ecx; cmp ecx, 3
		j(0x72, "ploop").
		emit(0x89, 0xd8, 0xe6, 0xf4, 0xf4). // mov eax, ebx; out 0xf4, al; hlt
		bytes()
}

// TestKVMPCITestdev: all six of pci-testdev's tests (memory and I/O BAR;
// exits, wildcard and datamatch ioeventfds) pass with exact counts.
func TestKVMPCITestdev(t *testing.T) {
	r := runVMM(t, guestPCITestdev(), "--testdev", "--timeout", "20s")
	require.Equal(t, 2*6+1, r.code, "stderr: %s", r.stderr)
}

// guestPMTimer reads the ACPI PM timer (PM block 0x600 + 8) twice around a
// spin and exits 1 when it advanced.
func guestPMTimer() []byte {
	return newAsm().
		emit(0x66, 0xba, 0x08, 0x06, 0xed, 0x89, 0xc3).       // mov dx, 0x608; in eax, dx; mov ebx, eax
		emit(0xb9).emit(le32(100000)...).                     // mov ecx, 100000
		label("spin").emit(0xff, 0xc9).j(0x75, "spin").       // dec ecx; jnz spin
		emit(0xed, 0x29, 0xd8, 0x25).emit(le32(0xffffff)...). // in eax, dx; sub eax, ebx; and eax, 0xffffff
		emit(0x31, 0xdb, 0x85, 0xc0).j(0x74, "done").         // xor ebx, ebx; test eax, eax; jz done
		emit(0xff, 0xc3).                                     // inc ebx
		label("done").
		emit(0x89, 0xd8, 0xe6, 0xf4, 0xf4). // mov eax, ebx; out 0xf4, al; hlt
		bytes()
}

// TestKVMDirectBootPMTimer: direct boot's PC ACPI has the PM block at 0x600
// with a counting PM timer; --acpi reduced has none (the port is unclaimed).
func TestKVMDirectBootPMTimer(t *testing.T) {
	r := runVMM(t, guestPMTimer(), "--timeout", "20s")
	require.Equal(t, 2*1+1, r.code, "stderr: %s", r.stderr)
	r = runVMM(t, guestPMTimer(), "--acpi", "reduced", "--timeout", "20s")
	require.Equal(t, 2*0+1, r.code, "stderr: %s", r.stderr)
}

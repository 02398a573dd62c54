package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Where the CR8 guest keeps its IDT, the IDT's pseudo-descriptor and its
// stack: 8 MiB into the tests' 64 MiB, clear of the kernel at 1 MiB.
const (
	cr8IDT      = 0x800000
	cr8IDTR     = cr8IDT + 0x600
	cr8Stack    = 0x810000
	cr8Tick     = 0x40 // the LAPIC timer's vector
	cr8Spurious = 0x4f // the LAPIC's spurious vector (low nibble all ones)
	// cr8Windows is how many bursts of CR8 writes must end with the timer's
	// interrupt pending before the guest exits.
	cr8Windows = 20
	lapicBase  = 0xfee00000
)

// gate writes the 64-bit interrupt gate of vector vec, for the handler at
// label, into the IDT (edx holds the code selector).
func (a *asm) gate(vec int, label string) *asm {
	return a.leaRAX(label).
		emit(0xbf).emit(le32(uint32(cr8IDT+vec*16))...). // mov edi, &idt[vec]
		emit(0x66, 0x89, 0x07).                          // mov [rdi], ax (offset 15:0)
		emit(0x66, 0x89, 0x57, 0x02).                    // mov [rdi+2], dx (selector)
		emit(0xc7, 0x47, 0x04, 0x00, 0x8e, 0, 0).        // mov dword [rdi+4], 0x8e00 (present, DPL 0, interrupt gate)
		emit(0xc1, 0xe8, 0x10).                          // shr eax, 16
		emit(0x66, 0x89, 0x47, 0x06).                    // mov [rdi+6], ax (offset 31:16)
		emit(0xc7, 0x47, 0x08, 0, 0, 0, 0).              // mov dword [rdi+8], 0 (offset 63:32)
		emit(0xc7, 0x47, 0x0c, 0, 0, 0, 0)               // mov dword [rdi+12], 0
}

// lapicWrite stores v in the LAPIC register at offset reg (rbx = LAPIC base).
func (a *asm) lapicWrite(reg uint32, v uint32) *asm {
	return a.emit(0xc7, 0x83).emit(le32(reg)...).emit(le32(v)...) // mov dword [rbx+reg], v
}

// cr8Burst writes CR8 n times, alternating 0 and 1 (both below the timer
// vector's priority class, so KVM need not intercept the writes).
func (a *asm) cr8Burst(label string, n uint32) *asm {
	a.emit(0xbe).emit(le32(n)...) // mov esi, n
	return a.label(label).
		emit(0x89, 0xf0).             // mov eax, esi
		emit(0x83, 0xe0, 0x01).       // and eax, 1
		emit(0x44, 0x0f, 0x22, 0xc0). // mov cr8, rax
		emit(0xff, 0xce).             // dec esi
		j(0x75, label)                // jnz label
}

// guestCR8TimerPending is what OVMF and Windows do to a nested host all the
// time: it runs the LAPIC timer periodic (vector 0x40, every 1 ms) and, with
// interrupts off, writes CR8 in bursts while the timer's interrupt waits,
// then waits for it (sti; hlt). Under a nested KVM a CR8 write while an
// interrupt waits for its window is the one that aborted the outer QEMU (see
// images/qemu/cr8-bql.patch). A burst ending with the vector in the LAPIC's
// IRR is followed by 1000 more writes, certainly with it pending. After
// cr8Windows such bursts the guest exits with 0x2c (vmm: 89) if the timer's
// interrupts were delivered as often, else with 0x2d (91).
func guestCR8TimerPending() []byte {
	a := newAsm().
		emit(0xbc).emit(le32(cr8Stack)...). // mov esp, stack
		emit(0x8c, 0xca).                   // mov edx, cs
		gate(cr8Tick, "tick").
		gate(cr8Spurious, "spurious").
		emit(0xbf).emit(le32(cr8IDTR)...).            // mov edi, &idtr
		emit(0x66, 0xc7, 0x07, 0xff, 0x04).           // mov word [rdi], 0x4ff (80 gates)
		emit(0xc7, 0x47, 0x02).emit(le32(cr8IDT)...). // mov dword [rdi+2], idt
		emit(0xc7, 0x47, 0x06, 0, 0, 0, 0).           // mov dword [rdi+6], 0
		emit(0x0f, 0x01, 0x1f).                       // lidt [rdi]
		emit(0xbb).emit(le32(lapicBase)...).          // mov ebx, LAPIC base
		lapicWrite(0xf0, 0x100|cr8Spurious).          // SVR: APIC on
		lapicWrite(0x3e0, 0xb).                       // timer divide by 1
		lapicWrite(0x320, 1<<17|cr8Tick).             // LVT timer: periodic
		lapicWrite(0x380, 1000000).                   // initial count: 1 ms at KVM's 1 GHz
		emit(0x45, 0x31, 0xf6).                       // xor r14d, r14d (bursts ending pending)
		emit(0x45, 0x31, 0xff).                       // xor r15d, r15d (ticks taken)
		label("burst").
		emit(0xfa). // cli
		cr8Burst("spin", 200000).
		emit(0xf6, 0x83, 0x20, 0x02, 0, 0, 0x01). // test byte [rbx+0x220], 1 (IRR bit of vector 0x40)
		j(0x74, "open").                          // jz open
		emit(0x41, 0xff, 0xc6).                   // inc r14d
		cr8Burst("pending", 1000).
		label("open").
		emit(0xfb, 0xf4).                   // sti; hlt (until the tick is taken)
		emit(0x41, 0x83, 0xfe, cr8Windows). // cmp r14d, cr8Windows
		j(0x72, "burst").                   // jb burst
		emit(0xfa).                         // cli
		emit(0x41, 0x83, 0xff, cr8Windows). // cmp r15d, cr8Windows
		j(0x72, "lost").                    // jb lost
		debugExit(0x2c).
		label("lost").
		debugExit(0x2d).
		label("tick").
		emit(0x41, 0xff, 0xc7).                      // inc r15d
		emit(0xc7, 0x83, 0xb0, 0, 0, 0, 0, 0, 0, 0). // mov dword [rbx+0xb0], 0 (EOI)
		emit(0x48, 0xcf).                            // iretq
		label("spurious").
		emit(0x48, 0xcf) // iretq
	return a.bytes()
}

// TestKVMCR8WritesWithTimerPending runs guestCR8TimerPending. In the nested
// test host (make test on hosts without hardware KVM) it checks that the
// outer QEMU survives a nested guest's CR8 writes with an interrupt pending,
// which Debian's QEMU 7.2 does not (testhost.EnvOuterQEMU=debian shows it).
func TestKVMCR8WritesWithTimerPending(t *testing.T) {
	r := runVMM(t, guestCR8TimerPending(), "--timeout", "120s")
	require.Equal(t, 2*0x2c+1, r.code, "exit %d (91: ticks lost); stderr: %s", r.code, r.stderr)
	require.Equal(t, "debug-exit", r.report.Stop.Reason)
}

// Package exitbench is the exit round-trip benchmark's guest: a multiboot
// ELF, booted the same way by vmm and by QEMU, that times batches of guest
// operations each of which leaves the guest (kvm-unit-tests' vmexit test
// in spirit) and prints the cycles per operation on COM1. Ratios between
// VMMs in one host are the measure; absolute cycles are the host's.
package exitbench

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/vmmdev/vmm/firmware/acpi"
	"github.com/vmmdev/vmm/internal/testimage"
	"github.com/vmmdev/vmm/layout"
	"github.com/vmmdev/vmm/vmm/hyperv"
)

// Where the guest is loaded and keeps its data: RAM below 4 MiB, clear of
// the multiboot information both loaders place below 1 MiB.
const (
	loadAddr  = 0x100000
	idtAddr   = 0x200000
	idtrAddr  = idtAddr + 256*8
	varsAddr  = 0x201000
	t0Addr    = varsAddr      // TSC at a batch's start (8 bytes)
	countAddr = varsAddr + 8  // interrupts taken by the counting handlers
	batchAddr = varsAddr + 12 // batches left of the current row
	paceAddr  = varsAddr + 16 // the current batch's pace (cycles per CPUID)
	nextAddr  = varsAddr + 20 // where the next batch's result goes
	// Each batch's cycles and pace (4 bytes each), in the order they ran:
	// printed only after the last row, so that no console output (which a
	// VMM may finish on another thread after the exit) overlaps a timing.
	resultsAddr = varsAddr + 0x100
	stackTop    = 0x210000
	simAddr     = 0x211000 // the SynIC message page
	// MemoryMiB is enough RAM for the above.
	MemoryMiB = 16
)

// Guest-visible addresses the rows exercise.
const (
	com1       = 0x3f8
	debugExit  = 0xf4
	pmTimer    = layout.PortPMBase + acpi.PMTimerOffset // the ACPI PM timer where SeaBIOS and vmm place it
	testdevMem = layout.TestdevMMIO                     // pc-testdev's MMIO window (QEMU and vmm --testdev)
	lapic      = 0xfee00000                             // xAPIC
	lapicICR   = lapic + 0x300
	lapicEOI   = lapic + 0xb0
	lapicSVR   = lapic + 0xf0
	spurious   = 0xff
	vecIPI     = 0x40
	vecDirect  = 0x41 // the direct-mode synthetic timer's vector
	vecSINT    = 0x42 // SINT timerSINT's vector
	timerSINT  = 2
	vecAEOI    = 0x43 // SINT aeoiSINT's vector, auto-EOI
	aeoiSINT   = 3
	sintAEOI   = 1 << 17
	eomPending = 1 // message_flags bit: another message waits (TLFS)
)

// Hyper-V MSRs, and the STIMER config bits the guest sets (TLFS).
const (
	msrTimeRefCount = hyperv.MSRTimeRefCount
	msrSControl     = hyperv.MSRSControl
	msrSIMP         = hyperv.MSRSIMP
	msrEOM          = hyperv.MSREOM
	msrSINT0        = hyperv.MSRSINT0
	msrSTimer0Cfg   = hyperv.MSRSTimer0Config
	msrSTimer0Count = hyperv.MSRSTimer0Config + 1
	stimerPeriodic  = 1 << 1
	stimerAutoEn    = 1 << 3
	stimerDirect    = 1 << 12
)

// TimerDelay is how far ahead (100 ns units) the stimer-timer row arms its
// one-shot timer: beyond an exit's cost even two levels down, so that the
// expiry comes from the host's timer, not from arming in the past.
const TimerDelay = 1000

// TimerPeriod is the stimer-periodic row's period (100 ns units: 100 µs,
// vmm's shortest): short enough that a VMM's cost per expiry shows as
// expiries that come late.
const TimerPeriod = 1000

// Iterations per batch and batches per row.
const (
	Iterations = 500
	Batches    = 5
)

// PaceIterations is how many CPUIDs time each batch's pace, right before
// the batch: CPUID's exit never leaves the host kernel, so its cost is the
// same code under every VMM and follows only the host's speed at the time.
// On the nested test host that speed moves by 2x in phases of seconds
// (TCG on a shared machine), which a ratio of raw medians takes for a
// difference between VMMs; a batch's cycles over its pace cancel it.
const PaceIterations = 200

// ExitValue is what the guest writes to the debug-exit port when every
// row ran: vmm and QEMU's isa-debug-exit both exit with 2*ExitValue+1.
const ExitValue = 0x10

// Line starts every line the guest prints.
const Line = "EXITBENCH"

// Rows, in the order the guest runs them, with what one iteration does.
// Paced rows cost exit work, which the pace cancels the host's speed for;
// the others are the pace itself or mostly a wait for the host's timer,
// which lasts the same real time whatever the host's speed.
var Rows = []struct {
	Name, About string
	Paced       bool
}{
	{"cpuid", "CPUID leaf 0 (exit handled in the host kernel)", false},
	{"pio", "IN from the ACPI PM timer port 0x608 (exit to the VMM's userspace)", true},
	{"mmio", "read of pc-testdev's MMIO window at 0xff000000 (exit to the VMM's userspace)", true},
	{"ipi", "self-IPI through the xAPIC ICR, taken and EOIed (in-kernel LAPIC)", true},
	{"stimer-past", "Hyper-V stimer0 direct mode armed in the past (WRMSR count, interrupt, EOI)", true},
	{"stimer-timer", "Hyper-V stimer0 direct mode armed 100 µs ahead (RDMSR TIME_REF_COUNT, WRMSR count, host timer, interrupt, EOI)", false},
	{"stimer-msg", "Hyper-V stimer0 message mode armed in the past (WRMSR count, message in SINT2's slot, interrupt, EOI, EOM when pending)", true},
	{"stimer-aeoi", "stimer-msg through an auto-EOI SINT, as kvm-unit-tests' hyperv_stimer uses (no EOI: the hypervisor does it)", true},
	{"stimer-periodic", "Hyper-V stimer0 direct mode, periodic every 100 µs: cycles per expiry taken (more than the period: expiries came late)", false},
}

// ELF is the guest: a multiboot ELF32 kernel loaded at 1 MiB.
func ELF() []byte { return testimage.MultibootELF(loadAddr, code()) }

// print writes s to COM1 (clobbers eax, edx).
func (a *asm) print(s string) *asm {
	a.emit(0x66, 0xba, com1&0xff, com1>>8) // mov dx, COM1
	for _, c := range []byte(s) {
		a.emit(0xb0, c, 0xee) // mov al, c; out dx, al
	}
	return a
}

// exit writes v to the debug-exit port and halts.
func (a *asm) exit(v byte) *asm { return a.emit(0xb0, v, 0xe6, debugExit, 0xfa, 0xf4) }

// wrmsr writes hi:lo to msr (clobbers eax, ecx, edx).
func (a *asm) wrmsr(msr, hi, lo uint32) *asm {
	return a.emit(0xb9).imm32(msr).emit(0xb8).imm32(lo).emit(0xba).imm32(hi).emit(0x0f, 0x30)
}

// gate points IDT vector vec at label (edx holds CS; clobbers eax, edi).
func (a *asm) gate(vec int, label string) *asm {
	return a.emit(0xb8).addr(label). // mov eax, handler
						emit(0xbf).imm32(uint32(idtAddr+8*vec)). // mov edi, &idt[vec]
						emit(0x66, 0x89, 0x07).                  // mov [edi], ax
						emit(0x66, 0x89, 0x57, 0x02).            // mov [edi+2], dx
						emit(0xc7, 0x47, 0x04).imm32(0x8e00).    // mov dword [edi+4], 0x8e00 (present, 32-bit interrupt gate)
						emit(0xc1, 0xe8, 0x10).                  // shr eax, 16
						emit(0x66, 0x89, 0x47, 0x06)             // mov [edi+6], ax
}

// waitCount spins until the handlers have taken at least esi interrupts:
// a periodic timer's expiries can come two at a time (a second one
// injected right after the first handler's iret), so not until equal.
func (a *asm) waitCount(label string) *asm {
	return a.label(label).emit(0x39, 0x35).imm32(countAddr).j(0x7c, label) // cmp [count], esi; jl
}

// pace times PaceIterations CPUIDs into [pace], after as many untimed
// ones: whatever the last batch left the host to finish (its VMM's work
// after the exits) settles then instead of landing in the pace, which would
// flatter that VMM's paced ratio. Clobbers eax, ebx, ecx, edx, ebp.
func (a *asm) pace(name string) *asm {
	a.emit(0xbd).imm32(PaceIterations).label(name + ":settle") // mov ebp, PaceIterations
	a.emit(0x31, 0xc0, 0x0f, 0xa2)                             // xor eax, eax; cpuid
	a.emit(0x4d).j(0x75, name+":settle").                      // dec ebp; jnz settle
									emit(0x0f, 0x31).                                      // rdtsc
									emit(0xa3).imm32(t0Addr).                              // mov [t0], eax
									emit(0x89, 0x15).imm32(t0Addr + 4).                    // mov [t0+4], edx
									emit(0xbd).imm32(PaceIterations).label(name + ":pace") // mov ebp, PaceIterations
	a.emit(0x31, 0xc0, 0x0f, 0xa2)             // xor eax, eax; cpuid
	return a.emit(0x4d).j(0x75, name+":pace"). // dec ebp; jnz pace
							emit(0x0f, 0x31).                                  // rdtsc
							emit(0x2b, 0x05).imm32(t0Addr).                    // sub eax, [t0]
							emit(0x1b, 0x15).imm32(t0Addr+4).                  // sbb edx, [t0+4]
							emit(0xb9).imm32(PaceIterations).emit(0xf7, 0xf1). // mov ecx, PaceIterations; div ecx
							emit(0xa3).imm32(paceAddr)                         // mov [pace], eax
}

// row times Batches batches of Iterations runs of body, keeping each
// batch's cycles and pace for results. body must keep ebp; setup runs
// before each batch's clock starts and after its pace, teardown after the
// clock stops (it must keep eax and edx).
func (a *asm) row(name string, setup, body, teardown func(*asm)) *asm {
	a.rows = append(a.rows, name)
	a.emit(0xc7, 0x05).imm32(batchAddr).imm32(Batches) // mov dword [batch], Batches
	a.label(name + ":batch")
	a.pace(name)
	if setup != nil {
		setup(a)
	}
	a.emit(0x0f, 0x31). // rdtsc
				emit(0xa3).imm32(t0Addr).                          // mov [t0], eax
				emit(0x89, 0x15).imm32(t0Addr + 4).                // mov [t0+4], edx
				emit(0xbd).imm32(Iterations).label(name + ":loop") // mov ebp, Iterations
	body(a)
	a.emit(0x4d).near(name+":loop", 0x0f, 0x85). // dec ebp; jnz loop
							emit(0x0f, 0x31) // rdtsc
	if teardown != nil {
		teardown(a)
	}
	return a.emit(0x2b, 0x05).imm32(t0Addr). // sub eax, [t0]
							emit(0x1b, 0x15).imm32(t0Addr+4).                  // sbb edx, [t0+4]
							emit(0xb9).imm32(Iterations).emit(0xf7, 0xf1).     // mov ecx, Iterations; div ecx
							emit(0x8b, 0x3d).imm32(nextAddr).                  // mov edi, [next]
							emit(0x89, 0x07).                                  // mov [edi], eax
							emit(0xa1).imm32(paceAddr).emit(0x89, 0x47, 0x04). // mov eax, [pace]; mov [edi+4], eax
							emit(0x83, 0x05).imm32(nextAddr).emit(8).          // add dword [next], 8
							emit(0xff, 0x0d).imm32(batchAddr).                 // dec dword [batch]
							near(name+":batch", 0x0f, 0x85)
}

// results prints "EXITBENCH name cycles pace" for every batch the rows
// kept, in the order they ran.
func (a *asm) results() *asm {
	at := uint32(resultsAddr)
	for _, name := range a.rows {
		for range Batches {
			a.print(Line+" "+name+" ").emit(0xa1).imm32(at).near("printdec", 0xe8). // mov eax, [cycles]; printdec
												print(" ").emit(0xa1).imm32(at+4).near("printdec", 0xe8).print("\n") // mov eax, [pace]; printdec
			at += 8
		}
	}
	return a
}

// message is a SINT's handler: it frees the SINT's message slot, asks for
// the next message when one waits (EOM), counts, and EOIs unless the SINT
// is auto-EOI.
func (a *asm) message(label string, sint uint32, eoi bool) *asm {
	slot := uint32(simAddr) + sint*256
	a.label(label).
		emit(0x50, 0x51, 0x52).                                                   // push eax; push ecx; push edx
		emit(0xc7, 0x05).imm32(slot).imm32(0).                                    // mov dword [slot], 0 (HvMessageTypeNone)
		emit(0xf0, 0x83, 0x0c, 0x24, 0x00).                                       // lock or dword [esp], 0 (the store before the flag read)
		emit(0xf6, 0x05).imm32(slot+5).emit(eomPending).j(0x74, label+":nopend"). // test byte [slot+5], pending; jz
		wrmsr(msrEOM, 0, 0).
		label(label+":nopend").
		emit(0xff, 0x05).imm32(countAddr) // inc dword [count]
	if eoi {
		a.emit(0xc7, 0x05).imm32(lapicEOI).imm32(0)
	}
	return a.emit(0x5a, 0x59, 0x58, 0xcf) // pop edx; pop ecx; pop eax; iret
}

// countFrom loads esi with the handlers' count and enables interrupts.
func countFrom(a *asm) { a.emit(0x8b, 0x35).imm32(countAddr).emit(0xfb) } // mov esi, [count]; sti

func cli(a *asm) { a.emit(0xfa) }

// code is the guest, entered in 32-bit protected mode by a multiboot loader.
func code() []byte {
	a := newAsm(loadAddr+16). // testimage.MultibootELF puts the code after its 16-byte header
					emit(0xbc).imm32(stackTop).              // mov esp, stack
					emit(0xb0, 0xff, 0xe6, 0x21, 0xe6, 0xa1) // mov al, 0xff; out 0x21, al; out 0xa1, al (mask both PICs)
	// The SynIC message page starts empty.
	a.emit(0xbf).imm32(simAddr).emit(0x31, 0xc0, 0xb9).imm32(1024).emit(0xf3, 0xab) // mov edi, sim; xor eax, eax; mov ecx, 1024; rep stosd
	a.emit(0x8c, 0xca)                                                              // mov edx, cs
	for vec := range 256 {
		a.gate(vec, "unexpected")
	}
	a.gate(vecIPI, "count").gate(vecDirect, "count").gate(vecSINT, "message").gate(vecAEOI, "message-aeoi").gate(spurious, "iret").
		emit(0xbf).imm32(idtrAddr).                             // mov edi, idtr
		emit(0x66, 0xc7, 0x07, 0xff, 0x07).                     // mov word [edi], 256*8-1
		emit(0xc7, 0x47, 0x02).imm32(idtAddr).                  // mov dword [edi+2], idt
		emit(0x0f, 0x01, 0x1f).                                 // lidt [edi]
		emit(0xc7, 0x05).imm32(lapicSVR).imm32(0x100|spurious). // LAPIC on
		emit(0xc7, 0x05).imm32(nextAddr).imm32(resultsAddr)     // mov dword [next], results

	a.row("cpuid", nil, func(a *asm) { a.emit(0x31, 0xc0, 0x0f, 0xa2) }, nil)                   // xor eax, eax; cpuid
	a.row("pio", nil, func(a *asm) { a.emit(0x66, 0xba, pmTimer&0xff, pmTimer>>8, 0xed) }, nil) // mov dx, PM timer; in eax, dx
	a.row("mmio", nil, func(a *asm) { a.emit(0xa1).imm32(testdevMem) }, nil)                    // mov eax, [window]
	a.row("ipi", countFrom, func(a *asm) {
		a.emit(0x46). // inc esi
				emit(0xc7, 0x05).imm32(lapicICR).imm32(1<<18 | vecIPI). // ICR: fixed, to self
				waitCount("ipi:wait")
	}, cli)

	a.wrmsr(msrSControl, 0, 1).
		wrmsr(msrSIMP, 0, simAddr|1).
		wrmsr(msrSINT0+timerSINT, 0, vecSINT).
		wrmsr(msrSINT0+aeoiSINT, 0, sintAEOI|vecAEOI).
		wrmsr(msrSTimer0Cfg, 0, stimerDirect|vecDirect<<4|stimerAutoEn)
	a.row("stimer-past", countFrom, func(a *asm) {
		a.emit(0x46).wrmsr(msrSTimer0Count, 0, 1).waitCount("past:wait") // inc esi; count 1: long past
	}, cli)
	a.row("stimer-timer", countFrom, func(a *asm) {
		a.emit(0x46, 0xb9).imm32(msrTimeRefCount).emit(0x0f, 0x32). // inc esi; mov ecx, TIME_REF_COUNT; rdmsr
										emit(0x05).imm32(TimerDelay).emit(0x83, 0xd2, 0x00). // add eax, delay; adc edx, 0
										emit(0xb9).imm32(msrSTimer0Count).emit(0x0f, 0x30).  // mov ecx, STIMER0_COUNT; wrmsr
										waitCount("timer:wait")
	}, cli)
	a.wrmsr(msrSTimer0Cfg, 0, timerSINT<<16|stimerAutoEn)
	a.row("stimer-msg", countFrom, func(a *asm) {
		a.emit(0x46).wrmsr(msrSTimer0Count, 0, 1).waitCount("msg:wait")
	}, cli)
	a.wrmsr(msrSTimer0Cfg, 0, aeoiSINT<<16|stimerAutoEn)
	a.row("stimer-aeoi", countFrom, func(a *asm) {
		a.emit(0x46).wrmsr(msrSTimer0Count, 0, 1).waitCount("aeoi:wait")
	}, cli)
	a.wrmsr(msrSTimer0Cfg, 0, stimerDirect|vecDirect<<4|stimerPeriodic|stimerAutoEn)
	a.row("stimer-periodic", func(a *asm) {
		// Take a tick left pending from the last batch first, then
		// restart the period.
		a.emit(0xfb, 0x90, 0x8b, 0x35).imm32(countAddr).wrmsr(msrSTimer0Count, 0, TimerPeriod) // sti; nop; mov esi, [count]
	}, func(a *asm) {
		a.emit(0x46).waitCount("periodic:wait")
	}, cli)
	a.wrmsr(msrSTimer0Cfg, 0, 0)
	for i, r := range Rows {
		if i >= len(a.rows) || a.rows[i] != r.Name {
			panic(fmt.Sprintf("exitbench: the guest's rows %q are not Rows", a.rows))
		}
	}
	a.results().print(Line + " done\n").exit(ExitValue)

	// count: the IPI's and the direct timer's handler.
	a.label("count").
		emit(0xff, 0x05).imm32(countAddr).                   // inc dword [count]
		emit(0xc7, 0x05).imm32(lapicEOI).imm32(0).emit(0xcf) // EOI; iret
	a.message("message", timerSINT, true).message("message-aeoi", aeoiSINT, false)
	a.label("iret").emit(0xcf)
	a.label("unexpected").print(Line + " unexpected interrupt\n").exit(ExitValue + 1)

	// printdec prints eax in decimal (clobbers eax, ebx, ecx, edx).
	a.label("printdec").
		emit(0xb9).imm32(10).emit(0x31, 0xdb). // mov ecx, 10; xor ebx, ebx
		label("digit").
		emit(0x31, 0xd2, 0xf7, 0xf1).         // xor edx, edx; div ecx
		emit(0x80, 0xc2, '0', 0x52, 0x43).    // add dl, '0'; push edx; inc ebx
		emit(0x85, 0xc0).j(0x75, "digit").    // test eax, eax; jnz
		emit(0x66, 0xba, com1&0xff, com1>>8). // mov dx, COM1
		label("out").
		emit(0x58, 0xee, 0x4b).j(0x75, "out"). // pop eax; out dx, al; dec ebx; jnz
		emit(0xc3)                             // ret
	return a.bytes()
}

// Batch is one batch's cycles per iteration and its pace (cycles per
// CPUID just before it).
type Batch struct{ Cycles, Pace float64 }

// Paced is the batch's cost in units of its pace.
func (b Batch) Paced() float64 { return b.Cycles / b.Pace }

// Parse collects each row's batches from a console, and whether the guest
// got to its end ("EXITBENCH done").
func Parse(lines []string) (batches map[string][]Batch, done bool) {
	batches = map[string][]Batch{}
	for _, l := range lines {
		_, rest, ok := strings.Cut(l, Line+" ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 1 && f[0] == "done" {
			done = true
			continue
		}
		if len(f) != 3 {
			continue
		}
		v, err1 := strconv.ParseUint(f[1], 10, 32)
		p, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || p == 0 {
			continue
		}
		batches[f[0]] = append(batches[f[0]], Batch{Cycles: float64(v), Pace: float64(p)})
	}
	return batches, done
}

// VMMArgs are `vmm run`'s arguments for the guest at path: pc-testdev
// for the MMIO row, the --hyperv list hv (every enlightenment, for the
// stimer rows, with or without kernel-timers).
func VMMArgs(path, timeout, hv string) []string {
	return []string{"run", "--kernel", path, "--cpus", "1", "--memory", fmt.Sprintf("%dM", MemoryMiB),
		"--console", "stdio", "--testdev", "--hyperv", hv, "--timeout", timeout}
}

// QEMUArgs are QEMU's for the same machine: -M pc through SeaBIOS (which
// places the PIIX4 PM block as vmm does), with hvCPU as -cpu.
func QEMUArgs(path, bios, hvCPU string) []string {
	return []string{"-M", "pc", "-enable-kvm", "-cpu", hvCPU, "-m", strconv.Itoa(MemoryMiB), "-smp", "1",
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-bios", bios,
		"-kernel", path, "-device", "pc-testdev", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-no-reboot"}
}

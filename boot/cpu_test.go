package boot

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/boot/internal/fakemem"
	"github.com/vmmdev/vmm/layout"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// resetSregs is the state KVM_GET_SREGS returns for a fresh vCPU (the parts that matter here).
func resetSregs() kvm.Sregs {
	seg := func(typ uint8) kvm.Segment {
		return kvm.Segment{Limit: 0xffff, Type: typ, Present: 1, S: 1}
	}
	s := kvm.Sregs{
		CS:       kvm.Segment{Base: 0xffff0000, Limit: 0xffff, Selector: 0xf000, Type: 0xb, Present: 1, S: 1},
		TR:       kvm.Segment{Limit: 0xffff, Type: 0xb, Present: 1},
		LDT:      kvm.Segment{Limit: 0xffff, Type: 0x2, Present: 1},
		GDT:      kvm.DTable{Limit: 0xffff},
		IDT:      kvm.DTable{Limit: 0xffff},
		CR0:      0x60000010,
		APICBase: 0xfee00900,
	}
	s.DS, s.ES, s.FS, s.GS, s.SS = seg(3), seg(3), seg(3), seg(3), seg(3)
	return s
}

func u64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

func TestSetupCPULong64(t *testing.T) {
	mem := fakemem.New(16 << 20)
	s := resetSregs()
	regs := kvm.Regs{RCX: 99, RIP: 1}
	e := Entry{Mode: Long64, IP: 0x100200, RSI: layout.ZeroPage, RAX: 1, RBX: 2, RSP: 0x8000}
	require.NoError(t, SetupCPU(mem, e, &s, &regs))

	require.Equal(t, kvm.Regs{RIP: 0x100200, RFLAGS: 2, RSI: layout.ZeroPage, RAX: 1, RBX: 2, RSP: 0x8000}, regs)

	gdt := mem.Read(layout.BootGDT, 32)
	require.Equal(t, uint64(0), u64(gdt[0:]))
	require.Equal(t, uint64(0), u64(gdt[8:]))
	require.Equal(t, uint64(0x00af9b000000ffff), u64(gdt[0x10:]), "64-bit code")
	require.Equal(t, uint64(0x00cf93000000ffff), u64(gdt[0x18:]), "flat data")
	require.Equal(t, make([]byte, 8), mem.Read(layout.BootIDT, 8))

	require.Equal(t, uint64(layout.PDPT|3), u64(mem.Read(layout.PML4, 8)))
	require.False(t, mem.Dirty(layout.PML4+8, 4096-8), "rest of PML4 empty")
	for i := range uint64(4) {
		require.Equal(t, layout.PD+i*4096|3, u64(mem.Read(layout.PDPT+i*8, 8)))
	}
	require.False(t, mem.Dirty(layout.PDPT+32, 4096-32))
	pd := mem.Read(layout.PD, 4*4096)
	for i := range 2048 {
		require.Equal(t, uint64(i)<<21|0x83, u64(pd[i*8:]), "PDE %d", i)
	}

	code := kvm.Segment{Limit: 0xffffffff, Selector: 0x10, Type: 0xb, Present: 1, S: 1, L: 1, G: 1}
	data := kvm.Segment{Limit: 0xffffffff, Selector: 0x18, Type: 0x3, Present: 1, S: 1, DB: 1, G: 1}
	require.Equal(t, code, s.CS)
	for _, seg := range []kvm.Segment{s.DS, s.ES, s.FS, s.GS, s.SS} {
		require.Equal(t, data, seg)
	}
	require.Equal(t, kvm.DTable{Base: layout.BootGDT, Limit: 31}, s.GDT)
	require.Equal(t, kvm.DTable{Base: layout.BootIDT, Limit: 0}, s.IDT)
	require.Equal(t, uint64(0x80000011), s.CR0, "PE|PG|ET, caches enabled")
	require.Equal(t, uint64(0x20), s.CR4)
	require.Equal(t, uint64(0x500), s.EFER)
	require.Equal(t, uint64(layout.PML4), s.CR3)
	// Untouched: the APIC base and the task register from KVM.
	require.Equal(t, uint64(0xfee00900), s.APICBase)
	require.Equal(t, resetSregs().TR, s.TR)
	require.Equal(t, resetSregs().LDT, s.LDT)
}

func TestSetupCPUProtected32(t *testing.T) {
	mem := fakemem.New(1 << 20)
	s := resetSregs()
	s.EFER = 0x500 // stale long-mode bits must be cleared
	var regs kvm.Regs
	e := Entry{Mode: Protected32, IP: 0x100000, RAX: 0x2badb002, RBX: layout.BootInfo}
	require.NoError(t, SetupCPU(mem, e, &s, &regs))
	require.Equal(t, kvm.Regs{RIP: 0x100000, RFLAGS: 2, RAX: 0x2badb002, RBX: layout.BootInfo}, regs)

	gdt := mem.Read(layout.BootGDT, 32)
	require.Equal(t, uint64(0x00cf9b000000ffff), u64(gdt[0x10:]), "32-bit code")
	require.Equal(t, uint64(0x00cf93000000ffff), u64(gdt[0x18:]))
	require.False(t, mem.Dirty(layout.PML4, 6*4096), "no page tables for 32-bit entry")

	require.Equal(t, kvm.Segment{Limit: 0xffffffff, Selector: 0x10, Type: 0xb, Present: 1, S: 1, DB: 1, G: 1}, s.CS)
	require.Equal(t, uint8(1), s.SS.DB)
	require.Equal(t, uint64(0x11), s.CR0, "PE, paging off")
	require.Equal(t, uint64(0), s.CR4)
	require.Equal(t, uint64(0), s.EFER)
}

func TestSetupCPUReal(t *testing.T) {
	mem := fakemem.New(1 << 20)
	s := resetSregs()
	var regs kvm.Regs
	require.NoError(t, SetupCPU(mem, Entry{Mode: RealMode, CS: 0x1000, IP: 0x10, RSP: 0xfff0}, &s, &regs))
	require.Equal(t, kvm.Regs{RIP: 0x10, RFLAGS: 2, RSP: 0xfff0}, regs)
	require.Equal(t, kvm.Segment{Base: 0x10000, Limit: 0xffff, Selector: 0x1000, Type: 0xb, Present: 1, S: 1}, s.CS)
	require.Equal(t, kvm.Segment{Limit: 0xffff, Type: 3, Present: 1, S: 1}, s.DS)
	require.Equal(t, uint64(0x60000010), s.CR0, "CR0 unchanged")
	require.Equal(t, resetSregs().GDT, s.GDT)
	require.Zero(t, mem.Writes, "real mode writes no tables")
}

func TestSetupCPUErrors(t *testing.T) {
	var regs kvm.Regs
	for _, e := range []Entry{
		{Mode: Mode(7)},
		{Mode: RealMode, IP: 0x10000},
		{Mode: Protected32, IP: 1 << 32},
		{Mode: Long64, IP: 1 << 32},
	} {
		s := resetSregs()
		require.ErrorIs(t, SetupCPU(fakemem.New(1<<20), e, &s, &regs), ErrBadEntry, "%+v", e)
		require.Equal(t, resetSregs(), s, "sregs untouched on error")
	}
	// Memory too small for the page tables: the write error comes back wrapped.
	s := resetSregs()
	err := SetupCPU(fakemem.New(layout.PD), Entry{Mode: Long64, IP: 0x100200}, &s, &regs)
	require.ErrorIs(t, err, fakemem.ErrOutOfRange)
	require.ErrorContains(t, err, "page directories")
}

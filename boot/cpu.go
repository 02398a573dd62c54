package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmmdev/vmm/boot/internal/gmem"
	"github.com/vmmdev/vmm/layout"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// ErrBadEntry is returned for an Entry that cannot be set up (unknown mode, an
// IP that does not fit the mode).
var ErrBadEntry = errors.New("bad boot entry")

// Selectors of the boot GDT. Linux's 32- and 64-bit boot protocols require
// __BOOT_CS = 0x10 and __BOOT_DS = 0x18; PVH and multiboot accept any flat
// segments, so every mode uses the same table.
const (
	SelectorCode = 0x10
	SelectorData = 0x18
)

// Control register and EFER bits.
const (
	cr0PE = 1 << 0
	cr0NW = 1 << 29
	cr0CD = 1 << 30
	cr0PG = 1 << 31

	cr4PAE = 1 << 5

	eferLME = 1 << 8
	eferLMA = 1 << 10
)

// Page table entry bits.
const (
	ptePresent  = 1 << 0
	pteWritable = 1 << 1
	ptePageSize = 1 << 7 // 2 MiB page in a page directory entry
)

const (
	pageSize = 4096
	gdtSize  = 4 * 8
	idtSize  = layout.BootIDTEnd - layout.BootIDT
	// pdPages page directories of 512 2-MiB entries map 4 GiB.
	pdPages        = 4
	identityMapped = pdPages << 30
)

// Segment descriptors (flags nibble, access byte) for the boot GDT; base 0,
// limit 0xfffff in 4 KiB units, accessed bit set so the CPU never writes them.
const (
	accessCode  = 0x9b // present, DPL 0, code, execute/read, accessed
	accessData  = 0x93 // present, DPL 0, data, read/write, accessed
	flagsCode64 = 0xa  // G, L
	flagsFlat32 = 0xc  // G, D/B
)

// SetupCPU prepares the boot CPU for e: it writes the boot GDT, an empty IDT
// and, for Long64, identity page tables for the first 4 GiB into mem, and sets
// sregs and regs. sregs should come from KVM_GET_SREGS: only the fields the
// entry mode needs are changed, so the APIC base, TR and LDT keep KVM's reset
// state. regs is overwritten: registers Entry does not name start at zero.
func SetupCPU(mem io.WriterAt, e Entry, sregs *kvm.Sregs, regs *kvm.Regs) error {
	switch e.Mode {
	case RealMode:
		if e.IP > 0xffff || e.RSP > 0xffff {
			return fmt.Errorf("%w: real-mode IP %#x or SP %#x beyond 64 KiB", ErrBadEntry, e.IP, e.RSP)
		}
		setupReal(e, sregs)
	case Protected32:
		if e.IP > 0xffffffff {
			return fmt.Errorf("%w: 32-bit entry point %#x beyond 4 GiB", ErrBadEntry, e.IP)
		}
		if err := writeGDT(mem, flagsFlat32); err != nil {
			return err
		}
		setupProtected(sregs, false)
	case Long64:
		if e.IP >= identityMapped {
			return fmt.Errorf("%w: 64-bit entry point %#x beyond the identity-mapped 4 GiB", ErrBadEntry, e.IP)
		}
		if err := writeGDT(mem, flagsCode64); err != nil {
			return err
		}
		if err := writePageTables(mem); err != nil {
			return err
		}
		setupProtected(sregs, true)
	default:
		return fmt.Errorf("%w: unknown mode %d", ErrBadEntry, int(e.Mode))
	}
	*regs = kvm.Regs{
		RIP:    e.IP,
		RFLAGS: 2, // bit 1 is reserved and always set; interrupts off
		RAX:    e.RAX,
		RBX:    e.RBX,
		RSI:    e.RSI,
		RSP:    e.RSP,
	}
	return nil
}

// descriptor encodes a flat (base 0, limit 0xfffff) segment descriptor.
func descriptor(flags, access uint8) uint64 {
	const limit = 0xfffff
	return uint64(limit&0xffff) | uint64(access)<<40 | uint64(limit>>16)<<48 | uint64(flags)<<52
}

// gdt returns the boot GDT for a code segment with the given flags: null,
// an unused null entry at 0x08, code at 0x10 and data at 0x18.
func gdt(codeFlags uint8) []byte {
	b := make([]byte, gdtSize)
	binary.LittleEndian.PutUint64(b[SelectorCode:], descriptor(codeFlags, accessCode))
	binary.LittleEndian.PutUint64(b[SelectorData:], descriptor(flagsFlat32, accessData))
	return b
}

func writeGDT(mem io.WriterAt, codeFlags uint8) error {
	if err := gmem.Write(mem, layout.BootGDT, gdt(codeFlags)); err != nil {
		return fmt.Errorf("boot GDT: %w", err)
	}
	if err := gmem.Write(mem, layout.BootIDT, make([]byte, idtSize)); err != nil {
		return fmt.Errorf("boot IDT: %w", err)
	}
	return nil
}

// writePageTables identity-maps [0, 4 GiB) with 2 MiB pages: one PML4 entry,
// four PDPT entries, four page directories.
func writePageTables(mem io.WriterAt) error {
	pml4 := make([]byte, pageSize)
	binary.LittleEndian.PutUint64(pml4, layout.PDPT|ptePresent|pteWritable)
	pdpt := make([]byte, pageSize)
	for i := range pdPages {
		binary.LittleEndian.PutUint64(pdpt[i*8:], uint64(layout.PD+i*pageSize)|ptePresent|pteWritable)
	}
	pd := make([]byte, pdPages*pageSize)
	for i := range pdPages * 512 {
		binary.LittleEndian.PutUint64(pd[i*8:], uint64(i)<<21|ptePresent|pteWritable|ptePageSize)
	}
	for _, t := range []struct {
		name string
		addr uint64
		data []byte
	}{{"PML4", layout.PML4, pml4}, {"PDPT", layout.PDPT, pdpt}, {"page directories", layout.PD, pd}} {
		if err := gmem.Write(mem, t.addr, t.data); err != nil {
			return fmt.Errorf("boot page tables: %s: %w", t.name, err)
		}
	}
	return nil
}

// segment is the hidden (cached) state matching descriptor(flags, access) at sel.
func segment(sel uint16, flags, access uint8) kvm.Segment {
	return kvm.Segment{
		Base:     0,
		Limit:    0xffffffff, // 0xfffff pages with G
		Selector: sel,
		Type:     access & 0xf,
		Present:  access >> 7,
		DPL:      (access >> 5) & 3,
		S:        (access >> 4) & 1,
		AVL:      flags & 1,
		L:        (flags >> 1) & 1,
		DB:       (flags >> 2) & 1,
		G:        (flags >> 3) & 1,
	}
}

func setupProtected(s *kvm.Sregs, long bool) {
	s.GDT = kvm.DTable{Base: layout.BootGDT, Limit: gdtSize - 1}
	s.IDT = kvm.DTable{Base: layout.BootIDT, Limit: 0}
	data := segment(SelectorData, flagsFlat32, accessData)
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	// Caches on, as a bootloader leaves them; KVM's reset state has CD and NW set.
	s.CR0 = s.CR0&^(cr0CD|cr0NW) | cr0PE
	if long {
		s.CS = segment(SelectorCode, flagsCode64, accessCode)
		s.CR3 = layout.PML4
		s.CR4 |= cr4PAE
		s.CR0 |= cr0PG
		s.EFER |= eferLME | eferLMA
		return
	}
	s.CS = segment(SelectorCode, flagsFlat32, accessCode)
	s.CR0 &^= cr0PG
	s.EFER &^= eferLME | eferLMA
}

// realSegment is a 64 KiB real-mode segment at selector<<4.
func realSegment(sel uint16, typ uint8) kvm.Segment {
	return kvm.Segment{Base: uint64(sel) << 4, Limit: 0xffff, Selector: sel, Type: typ, Present: 1, S: 1}
}

func setupReal(e Entry, s *kvm.Sregs) {
	s.CS = realSegment(e.CS, 0xb) // execute/read, accessed
	data := realSegment(0, 0x3)   // read/write, accessed
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
}

// Package pvh loads ELF kernels that carry a PVH entry point (the Xen
// XEN_ELFNOTE_PHYS32_ENTRY note, as Linux's vmlinux does with CONFIG_PVH):
// the segments go to their physical addresses and the kernel is entered in
// flat 32-bit protected mode with EBX pointing at a struct hvm_start_info
// that describes the command line, the initrd (as module 0), the memory map
// and the ACPI RSDP.
package pvh

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmmdev/vmm/boot"
	"github.com/vmmdev/vmm/boot/internal/elfseg"
	"github.com/vmmdev/vmm/boot/internal/gmem"
	"github.com/vmmdev/vmm/firmware/e820"
	"github.com/vmmdev/vmm/layout"
)

// Sentinel errors. ErrNotELF, ErrTruncated and ErrUnsupported are shared with
// the ELF reader, so errors.Is works whichever layer found the problem.
var (
	ErrNotELF          = elfseg.ErrNotELF
	ErrTruncated       = elfseg.ErrTruncated
	ErrUnsupported     = elfseg.ErrUnsupported
	ErrMalformed       = elfseg.ErrMalformed
	ErrNoPVHNote       = errors.New("ELF kernel has no PVH entry note")
	ErrCmdlineTooLong  = errors.New("kernel command line too long")
	ErrInitrdTooLarge  = errors.New("initrd does not fit in guest memory")
	ErrNotEnoughMemory = errors.New("not enough guest memory for the kernel")
)

const (
	// xenNotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY, owned by "Xen".
	xenNotePhys32Entry = 18

	startInfoMagic   = 0x336ec578
	startInfoVersion = 1 // the version with the memory map fields

	// Layout of the BootInfo page: start_info, one module entry, memory map.
	offModList   = 64 // past the 56-byte start_info, 8-byte aligned
	modEntrySize = 32
	offMemMap    = offModList + modEntrySize
	memMapEntry  = 24
	bootInfoSize = 4096
	maxMemMap    = (bootInfoSize - offMemMap) / memMapEntry

	pageSize = 4096
)

// Segment is a loadable part of the kernel.
type Segment struct {
	Addr    uint64 // guest-physical load address
	Data    []byte // file contents (nil from ParseFrom: they stay in the file)
	MemSize uint64 // size in memory; the rest past Data is cleared
}

// Kernel is a parsed PVH kernel. It refers to the data it was parsed from.
type Kernel struct {
	// Entry is the 32-bit physical entry point from the PVH note.
	Entry    uint32
	Segments []Segment
	loads    []elfseg.Prog
	src      io.ReaderAt // the file the segments are loaded from
	end      uint64      // end of the highest segment
}

// Parse validates an ELF kernel and finds its PVH entry point.
func Parse(data []byte) (*Kernel, error) {
	f, err := elfseg.Parse(data)
	if err != nil {
		return nil, err
	}
	return parsed(f, bytes.NewReader(data))
}

// ParseFrom is Parse reading only the ELF headers and notes from src; Load
// copies the segments from src straight into guest memory, so the kernel
// (Debian's vmlinux is 66 MB) never passes through the heap.
func ParseFrom(src boot.Source) (*Kernel, error) {
	f, err := elfseg.ParseFrom(src, src.Size())
	if err != nil {
		return nil, err
	}
	return parsed(f, src)
}

func parsed(f *elfseg.File, src io.ReaderAt) (*Kernel, error) {
	notes, err := f.Notes()
	if err != nil {
		return nil, err
	}
	k := &Kernel{src: src}
	found := false
	for _, n := range notes {
		if n.Name != "Xen" || n.Type != xenNotePhys32Entry {
			continue
		}
		// Linux emits a pointer-sized value; the entry itself is 32-bit.
		var entry uint64
		switch len(n.Desc) {
		case 4:
			entry = uint64(binary.LittleEndian.Uint32(n.Desc))
		case 8:
			entry = binary.LittleEndian.Uint64(n.Desc)
		default:
			return nil, fmt.Errorf("%w: PVH entry note of %d bytes", ErrMalformed, len(n.Desc))
		}
		if entry > 0xffffffff {
			return nil, fmt.Errorf("%w: PVH entry %#x beyond 4 GiB", ErrUnsupported, entry)
		}
		k.Entry, found = uint32(entry), true
		break
	}
	if !found {
		return nil, ErrNoPVHNote
	}
	k.loads = f.Loads()
	lo, hi, ok := elfseg.Extent(k.loads)
	if !ok {
		return nil, fmt.Errorf("%w: no loadable segments", ErrMalformed)
	}
	// Below 1 MiB live the VMM's boot structures and the BIOS area.
	if lo < layout.HighMemory {
		return nil, fmt.Errorf("%w: segment at %#x below 1 MiB", ErrUnsupported, lo)
	}
	if hi > layout.MMIOHoleStart {
		return nil, fmt.Errorf("%w: segments end at %#x, beyond low RAM (%#x)", ErrUnsupported, hi, uint64(layout.MMIOHoleStart))
	}
	k.end = hi
	for _, p := range k.loads {
		k.Segments = append(k.Segments, Segment{Addr: p.Paddr, Data: p.Data, MemSize: p.Memsz})
	}
	return k, nil
}

// Check validates that the kernel, a command line and an initrd of
// initrdSize bytes fit a guest with memSize bytes of RAM, without writing.
func (k *Kernel) Check(memSize uint64, cmdline string, initrdSize uint64) error {
	_, err := k.place(memSize, cmdline, initrdSize)
	return err
}

// place returns the initrd's address (0 without one).
func (k *Kernel) place(memSize uint64, cmdline string, initrdSize uint64) (uint64, error) {
	if len(cmdline) >= layout.CmdlineMax {
		return 0, fmt.Errorf("%w: %d bytes, at most %d", ErrCmdlineTooLong, len(cmdline), layout.CmdlineMax-1)
	}
	lowEnd := layout.RAMRegions(memSize)[0].End()
	if k.end > lowEnd {
		return 0, fmt.Errorf("%w: the kernel ends at %#x, low RAM at %#x", ErrNotEnoughMemory, k.end, lowEnd)
	}
	if initrdSize == 0 {
		return 0, nil
	}
	// Highest page-aligned place below the end of low RAM, above the kernel.
	if initrdSize > lowEnd || (lowEnd-initrdSize)&^(pageSize-1) < k.end {
		return 0, fmt.Errorf("%w: %d bytes between the kernel's end %#x and %#x", ErrInitrdTooLarge, initrdSize, k.end, lowEnd)
	}
	return (lowEnd - initrdSize) &^ (pageSize - 1), nil
}

// Load writes the kernel, command line, initrd and start_info into guest
// memory and returns the PVH entry state. memMap becomes the start_info
// memory map; acpiRSDP, if not zero, its rsdp_paddr.
func (k *Kernel) Load(mem io.WriterAt, memSize uint64, cmdline string, initrd []byte, memMap []e820.Entry, acpiRSDP uint64) (boot.Entry, error) {
	return k.LoadFrom(mem, memSize, cmdline, bytes.NewReader(initrd), memMap, acpiRSDP)
}

// LoadFrom is Load with the initrd read from a file straight into guest memory.
func (k *Kernel) LoadFrom(mem io.WriterAt, memSize uint64, cmdline string, initrd boot.Source, memMap []e820.Entry, acpiRSDP uint64) (boot.Entry, error) {
	initrdSize := uint64(max(initrd.Size(), 0))
	initrdAddr, err := k.place(memSize, cmdline, initrdSize)
	if err != nil {
		return boot.Entry{}, err
	}
	if len(memMap) > maxMemMap {
		return boot.Entry{}, fmt.Errorf("memory map has %d entries, start_info holds %d", len(memMap), maxMemMap)
	}
	if err := elfseg.Load(mem, k.loads, k.src); err != nil {
		return boot.Entry{}, fmt.Errorf("load kernel: %w", err)
	}
	if err := gmem.Write(mem, layout.Cmdline, append([]byte(cmdline), 0)); err != nil {
		return boot.Entry{}, fmt.Errorf("load command line: %w", err)
	}
	if err := gmem.Copy(mem, initrdAddr, initrd, 0, initrdSize); err != nil {
		return boot.Entry{}, fmt.Errorf("load initrd: %w", err)
	}
	info := startInfo(initrdAddr, initrdSize, memMap, acpiRSDP)
	if err := gmem.Write(mem, layout.BootInfo, info); err != nil {
		return boot.Entry{}, fmt.Errorf("write start_info: %w", err)
	}
	return boot.Entry{Mode: boot.Protected32, IP: uint64(k.Entry), RBX: layout.BootInfo}, nil
}

// startInfo builds the BootInfo page: struct hvm_start_info, the module list
// and the memory map (struct hvm_memmap_table_entry, e820 types).
func startInfo(initrdAddr, initrdSize uint64, memMap []e820.Entry, acpiRSDP uint64) []byte {
	le := binary.LittleEndian
	b := make([]byte, offMemMap+memMapEntry*len(memMap))
	le.PutUint32(b[0:], startInfoMagic)
	le.PutUint32(b[4:], startInfoVersion)
	if initrdSize > 0 {
		le.PutUint32(b[12:], 1) // nr_modules
		le.PutUint64(b[16:], layout.BootInfo+offModList)
		le.PutUint64(b[offModList:], initrdAddr)
		le.PutUint64(b[offModList+8:], initrdSize)
	}
	le.PutUint64(b[24:], layout.Cmdline)
	le.PutUint64(b[32:], acpiRSDP)
	le.PutUint64(b[40:], layout.BootInfo+offMemMap)
	le.PutUint32(b[48:], uint32(len(memMap)))
	for i, e := range memMap {
		m := b[offMemMap+i*memMapEntry:]
		le.PutUint64(m[0:], e.Addr)
		le.PutUint64(m[8:], e.Size)
		le.PutUint32(m[16:], uint32(e.Type))
	}
	return b
}

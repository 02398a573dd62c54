// Package multiboot loads kernels through the Multiboot Specification version
// 0.6.96 ("multiboot 1"): ELF kernels, or any image whose multiboot header
// carries load addresses (the a.out kludge), entered in flat 32-bit protected
// mode with EAX = 0x2BADB002 and EBX pointing at the multiboot information.
//
// As GRUB and QEMU do, segments may sit anywhere in low RAM, below 1 MiB too
// (kvm-unit-tests' realmode.flat is linked at 0x8000), as long as they miss
// what vmm places there (Reserved), and the command line is "KERNEL ARGS"
// (CommandLine).
package multiboot

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

// Sentinel errors. The ELF ones are shared with the ELF reader.
var (
	ErrNoHeader        = errors.New("no multiboot header in the first 8 KiB")
	ErrTruncated       = elfseg.ErrTruncated
	ErrMalformed       = elfseg.ErrMalformed
	ErrUnsupported     = elfseg.ErrUnsupported
	ErrCmdlineTooLong  = errors.New("kernel command line too long")
	ErrModulesTooLarge = errors.New("modules do not fit in guest memory")
	ErrTooManyModules  = errors.New("too many modules")
	ErrNotEnoughMemory = errors.New("not enough guest memory for the kernel")
	// ErrReserved: a kernel segment overlaps memory vmm writes (Reserved).
	ErrReserved = errors.New("kernel segment overlaps memory vmm reserves")
)

const (
	headerMagic     = 0x1badb002
	bootloaderMagic = 0x2badb002
	searchLimit     = 8192

	flagPageAlign = 1 << 0  // modules page aligned (always done)
	flagMemInfo   = 1 << 1  // mem_* and mmap wanted (always given)
	flagVideo     = 1 << 2  // video mode wanted (ignored: no framebuffer)
	flagAddress   = 1 << 16 // header carries load addresses
	// requiredKnown are the "must honour" bits 0-15 this loader understands.
	requiredKnown = flagPageAlign | flagMemInfo | flagVideo

	// multiboot_info flags.
	infoMem        = 1 << 0
	infoCmdline    = 1 << 2
	infoMods       = 1 << 3
	infoMmap       = 1 << 6
	infoLoaderName = 1 << 9

	// Layout of the BootInfo page.
	infoSize      = 128 // struct multiboot_info is 116 bytes
	offLoaderName = infoSize
	loaderName    = "vmm\x00"
	offEmptyStr   = offLoaderName + 8
	offMmap       = offEmptyStr + 8
	mmapEntrySize = 24 // size field + 20-byte entry
	modEntrySize  = 16
	bootInfoSize  = 4096

	pageSize = 4096
	lowerMax = 640 << 10
)

// Segment is a loadable part of the kernel.
type Segment struct {
	Addr    uint64 // guest-physical load address
	Data    []byte // file contents
	MemSize uint64 // size in memory; the rest past Data is cleared
}

// Kernel is a parsed multiboot kernel. It refers to the data it was parsed from.
type Kernel struct {
	// HeaderOffset is the multiboot header's offset in the file.
	HeaderOffset int
	// Flags are the header's flags.
	Flags uint32
	// Entry is the 32-bit physical entry point.
	Entry    uint32
	Segments []Segment
	end      uint64
}

// Parse finds the multiboot header and the kernel's segments.
func Parse(data []byte) (*Kernel, error) {
	le := binary.LittleEndian
	k := &Kernel{HeaderOffset: -1}
	for off := 0; off+12 <= min(len(data), searchLimit); off += 4 {
		magic, flags, sum := le.Uint32(data[off:]), le.Uint32(data[off+4:]), le.Uint32(data[off+8:])
		if magic == headerMagic && magic+flags+sum == 0 {
			k.HeaderOffset, k.Flags = off, flags
			break
		}
	}
	if k.HeaderOffset < 0 {
		return nil, ErrNoHeader
	}
	if unknown := k.Flags & 0xffff &^ requiredKnown; unknown != 0 {
		return nil, fmt.Errorf("%w: multiboot header requires features %#x", ErrUnsupported, unknown)
	}
	var err error
	if k.Flags&flagAddress != 0 {
		err = k.parseAddress(data)
	} else {
		err = k.parseELF(data)
	}
	if err != nil {
		return nil, err
	}
	for _, s := range k.Segments {
		k.end = max(k.end, s.Addr+s.MemSize)
	}
	if k.end > layout.MMIOHoleStart {
		return nil, fmt.Errorf("%w: kernel ends at %#x, beyond low RAM (%#x)", ErrUnsupported, k.end, uint64(layout.MMIOHoleStart))
	}
	return k, nil
}

// parseAddress loads per the header's address fields (flag 16): the file from
// the offset matching load_addr up to load_end_addr, bss up to bss_end_addr.
func (k *Kernel) parseAddress(data []byte) error {
	le := binary.LittleEndian
	off := k.HeaderOffset
	if len(data) < off+32 {
		return fmt.Errorf("%w: multiboot address fields beyond the end of the file", ErrTruncated)
	}
	if off+32 > searchLimit {
		return fmt.Errorf("%w: multiboot header with address fields crosses the first 8 KiB", ErrMalformed)
	}
	headerAddr, loadAddr := uint64(le.Uint32(data[off+12:])), uint64(le.Uint32(data[off+16:]))
	loadEnd, bssEnd := uint64(le.Uint32(data[off+20:])), uint64(le.Uint32(data[off+24:]))
	entry := le.Uint32(data[off+28:])
	if loadAddr > headerAddr || headerAddr-loadAddr > uint64(off) {
		return fmt.Errorf("%w: header_addr %#x and load_addr %#x disagree with the header's offset %#x", ErrMalformed, headerAddr, loadAddr, off)
	}
	fileOff := uint64(off) - (headerAddr - loadAddr)
	if loadEnd == 0 {
		loadEnd = loadAddr + uint64(len(data)) - fileOff
	}
	if loadEnd < loadAddr {
		return fmt.Errorf("%w: load_end_addr %#x below load_addr %#x", ErrMalformed, loadEnd, loadAddr)
	}
	if fileOff+loadEnd-loadAddr > uint64(len(data)) {
		return fmt.Errorf("%w: image to load_end_addr %#x needs %d bytes of the file, it has %d", ErrTruncated, loadEnd, fileOff+loadEnd-loadAddr, len(data))
	}
	memEnd := loadEnd
	if bssEnd != 0 {
		if bssEnd < loadEnd {
			return fmt.Errorf("%w: bss_end_addr %#x below load_end_addr %#x", ErrMalformed, bssEnd, loadEnd)
		}
		memEnd = bssEnd
	}
	if memEnd == loadAddr {
		return fmt.Errorf("%w: nothing to load", ErrMalformed)
	}
	if uint64(entry) < loadAddr || uint64(entry) >= memEnd {
		return fmt.Errorf("%w: entry %#x outside the image [%#x, %#x)", ErrMalformed, entry, loadAddr, memEnd)
	}
	k.Entry = entry
	k.Segments = []Segment{{Addr: loadAddr, Data: data[fileOff : fileOff+loadEnd-loadAddr], MemSize: memEnd - loadAddr}}
	return nil
}

// parseELF loads the ELF segments at their physical addresses. The entry
// point is a virtual address; like GRUB, translate it through the segment
// that contains it.
func (k *Kernel) parseELF(data []byte) error {
	f, err := elfseg.Parse(data)
	if err != nil {
		return fmt.Errorf("multiboot kernel without address fields: %w", err)
	}
	loads := f.Loads()
	if len(loads) == 0 {
		return fmt.Errorf("%w: no loadable segments", ErrMalformed)
	}
	entry := f.Entry
	for _, p := range loads {
		if f.Entry >= p.Vaddr && f.Entry-p.Vaddr < p.Memsz {
			entry = f.Entry - p.Vaddr + p.Paddr
			break
		}
	}
	if entry > 0xffffffff {
		return fmt.Errorf("%w: entry %#x beyond 4 GiB", ErrUnsupported, entry)
	}
	k.Entry = uint32(entry)
	for _, p := range loads {
		k.Segments = append(k.Segments, Segment{Addr: p.Paddr, Data: p.Data, MemSize: p.Memsz})
	}
	return nil
}

// Region is a range of guest-physical memory vmm writes in a multiboot boot.
type Region struct {
	Start, End uint64
	What       string
}

// Reserved lists what vmm writes into low memory when it boots a multiboot
// kernel with a command line of cmdlineLen bytes; no kernel segment may
// overlap any of it. Everything else in RAM is the kernel's: the real-mode
// IVT and BIOS data area below 0x500 hold nothing of vmm's, and no zero page
// or page tables are written (those are Linux's and 64-bit entry's). Modules
// go page-aligned above both the kernel and 1 MiB, so they need no entry.
func Reserved(cmdlineLen int) []Region {
	return []Region{
		{layout.BootGDT, layout.BootIDTEnd, "the boot GDT and IDT"},
		{layout.BootInfo, layout.BootInfo + bootInfoSize, "the multiboot information"},
		{layout.Cmdline, layout.Cmdline + uint64(cmdlineLen) + 1, "the command line"},
		// Reserved in the e820 map as well.
		{layout.EBDA, layout.HighMemory, "the BIOS area (EBDA; ACPI tables at 0xe0000, MP table at 0xf0000, reset stub at 0xffff0)"},
	}
}

// CommandLine is the multiboot command line for the kernel at path booted
// with args: "PATH ARGS", as GRUB and QEMU pass it, so that a program taking
// argv[0] from the first word finds its own name.
func CommandLine(path, args string) string {
	if args == "" {
		return path
	}
	return path + " " + args
}

// Check validates that the kernel, a command line and modules of the given
// sizes fit a guest with memSize bytes of RAM and an e820 map of mapEntries
// entries, without writing anything.
func (k *Kernel) Check(memSize uint64, cmdline string, moduleSizes []uint64, mapEntries int) error {
	_, err := k.place(memSize, cmdline, moduleSizes, mapEntries)
	return err
}

// place returns the modules' addresses.
func (k *Kernel) place(memSize uint64, cmdline string, moduleSizes []uint64, mapEntries int) ([]uint64, error) {
	if len(cmdline) >= layout.CmdlineMax {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrCmdlineTooLong, len(cmdline), layout.CmdlineMax-1)
	}
	if offMmap+mapEntries*mmapEntrySize+len(moduleSizes)*modEntrySize > bootInfoSize {
		return nil, fmt.Errorf("%w: %d modules and %d memory map entries overflow the boot information page", ErrTooManyModules, len(moduleSizes), mapEntries)
	}
	lowEnd := layout.RAMRegions(memSize)[0].End()
	if k.end > lowEnd {
		return nil, fmt.Errorf("%w: the kernel ends at %#x, low RAM at %#x", ErrNotEnoughMemory, k.end, lowEnd)
	}
	for _, s := range k.Segments {
		for _, r := range Reserved(len(cmdline)) {
			if s.MemSize > 0 && s.Addr < r.End && r.Start < s.Addr+s.MemSize {
				return nil, fmt.Errorf("%w: segment [%#x, %#x) overlaps %s at [%#x, %#x)",
					ErrReserved, s.Addr, s.Addr+s.MemSize, r.What, r.Start, r.End)
			}
		}
	}
	addrs := make([]uint64, len(moduleSizes))
	next := alignUp(max(k.end, layout.HighMemory))
	for i, size := range moduleSizes {
		if next > lowEnd || size > lowEnd-next {
			return nil, fmt.Errorf("%w: module %d of %d bytes at %#x, low RAM ends at %#x", ErrModulesTooLarge, i, size, next, lowEnd)
		}
		addrs[i] = next
		next = alignUp(next + size)
	}
	return addrs, nil
}

func alignUp(x uint64) uint64 { return (x + pageSize - 1) &^ (pageSize - 1) }

// Load writes the kernel, command line, modules and multiboot information
// into guest memory and returns the multiboot entry state. Modules are placed
// page-aligned above the kernel and 1 MiB, with empty strings. cmdline is the
// whole multiboot command line (see CommandLine).
func (k *Kernel) Load(mem io.WriterAt, memSize uint64, cmdline string, modules [][]byte, memMap []e820.Entry) (boot.Entry, error) {
	srcs := make([]boot.Source, len(modules))
	for i, m := range modules {
		srcs[i] = bytes.NewReader(m)
	}
	return k.LoadFrom(mem, memSize, cmdline, srcs, memMap)
}

// LoadFrom is Load with the modules read from files straight into guest memory.
func (k *Kernel) LoadFrom(mem io.WriterAt, memSize uint64, cmdline string, modules []boot.Source, memMap []e820.Entry) (boot.Entry, error) {
	sizes := make([]uint64, len(modules))
	for i, m := range modules {
		sizes[i] = uint64(max(m.Size(), 0))
	}
	addrs, err := k.place(memSize, cmdline, sizes, len(memMap))
	if err != nil {
		return boot.Entry{}, err
	}
	for _, s := range k.Segments {
		if err := gmem.Write(mem, s.Addr, s.Data); err != nil {
			return boot.Entry{}, fmt.Errorf("load kernel segment: %w", err)
		}
		if err := gmem.Zero(mem, s.Addr+uint64(len(s.Data)), s.MemSize-uint64(len(s.Data))); err != nil {
			return boot.Entry{}, fmt.Errorf("clear kernel bss: %w", err)
		}
	}
	if err := gmem.Write(mem, layout.Cmdline, append([]byte(cmdline), 0)); err != nil {
		return boot.Entry{}, fmt.Errorf("load command line: %w", err)
	}
	for i, m := range modules {
		if err := gmem.Copy(mem, addrs[i], m, 0, sizes[i]); err != nil {
			return boot.Entry{}, fmt.Errorf("load module %d: %w", i, err)
		}
	}
	if err := gmem.Write(mem, layout.BootInfo, info(addrs, sizes, memMap)); err != nil {
		return boot.Entry{}, fmt.Errorf("write multiboot information: %w", err)
	}
	return boot.Entry{Mode: boot.Protected32, IP: uint64(k.Entry), RAX: bootloaderMagic, RBX: layout.BootInfo}, nil
}

// info builds the BootInfo page: struct multiboot_info, the loader name, an
// empty string for the modules, the memory map and the module list.
func info(addrs, sizes []uint64, memMap []e820.Entry) []byte {
	le := binary.LittleEndian
	offMods := offMmap + len(memMap)*mmapEntrySize
	b := make([]byte, offMods+len(addrs)*modEntrySize)
	lower, upper := memSizes(memMap)
	le.PutUint32(b[0:], infoMem|infoCmdline|infoMods|infoMmap|infoLoaderName)
	le.PutUint32(b[4:], lower)
	le.PutUint32(b[8:], upper)
	le.PutUint32(b[16:], layout.Cmdline)
	le.PutUint32(b[20:], uint32(len(addrs)))
	le.PutUint32(b[24:], uint32(layout.BootInfo+offMods))
	le.PutUint32(b[44:], uint32(len(memMap)*mmapEntrySize))
	le.PutUint32(b[48:], layout.BootInfo+offMmap)
	le.PutUint32(b[64:], layout.BootInfo+offLoaderName)
	copy(b[offLoaderName:], loaderName)
	for i, e := range memMap {
		m := b[offMmap+i*mmapEntrySize:]
		le.PutUint32(m[0:], mmapEntrySize-4) // size excludes the size field itself
		le.PutUint64(m[4:], e.Addr)
		le.PutUint64(m[12:], e.Size)
		le.PutUint32(m[20:], uint32(e.Type))
	}
	for i := range addrs {
		m := b[offMods+i*modEntrySize:]
		le.PutUint32(m[0:], uint32(addrs[i]))
		le.PutUint32(m[4:], uint32(addrs[i]+sizes[i]))
		le.PutUint32(m[8:], layout.BootInfo+offEmptyStr)
	}
	return b
}

// memSizes returns mem_lower (KiB of RAM from 0, at most 640) and mem_upper
// (KiB of RAM from 1 MiB up to the first hole) from the map.
func memSizes(memMap []e820.Entry) (lower, upper uint32) {
	contiguousFrom := func(addr uint64) uint64 {
		for again := true; again; {
			again = false
			for _, e := range memMap {
				if e.Type == e820.RAM && e.Addr <= addr && addr < e.End() {
					addr, again = e.End(), true
				}
			}
		}
		return addr
	}
	lower = uint32(min(contiguousFrom(0), lowerMax) >> 10)
	upper = uint32(min((contiguousFrom(layout.HighMemory)-layout.HighMemory)>>10, 0xffffffff))
	return lower, upper
}

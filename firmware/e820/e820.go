// Package e820 builds the BIOS-style physical memory map (INT 15h, AX=E820h)
// that every boot protocol hands the guest in one encoding or another: the
// Linux zero page, the PVH memory map and the multiboot mmap all derive from it.
package e820

import (
	"fmt"

	"github.com/vmmdev/vmm/layout"
)

// Type is an address range type as defined by ACPI and the E820 BIOS call.
type Type uint32

// The address range types the platform uses.
const (
	RAM      Type = 1
	Reserved Type = 2
	ACPI     Type = 3 // ACPI tables, reclaimable once read
	NVS      Type = 4 // ACPI non-volatile storage
)

func (t Type) String() string {
	switch t {
	case RAM:
		return "RAM"
	case Reserved:
		return "reserved"
	case ACPI:
		return "ACPI"
	case NVS:
		return "NVS"
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// Entry is one range of the map.
type Entry struct {
	Addr, Size uint64
	Type       Type
}

// End is the first address past the entry.
func (e Entry) End() uint64 { return e.Addr + e.Size }

// Map returns the platform's memory map for memSize bytes of guest RAM, in
// ascending address order:
//
//	RAM      [0, EBDA)                  conventional memory
//	Reserved [EBDA, 1 MiB)              EBDA, VGA/ROM hole, ACPI tables, MP table
//	RAM      [1 MiB, end of low RAM)    up to the 32-bit MMIO hole
//	RAM      [4 GiB, ...)               whatever did not fit below the hole
//
// The ACPI tables at layout.ACPITables sit inside the reserved range, so they
// need no entry of their own. RAM entries are clipped to memSize; the reserved
// range is always listed because the VMM places its tables there regardless.
func Map(memSize uint64) []Entry {
	var m []Entry
	for _, r := range layout.RAMRegions(memSize) {
		if r.Start == 0 {
			m = append(m, clip(0, layout.EBDA, r)...)
			m = append(m, Entry{Addr: layout.EBDA, Size: layout.HighMemory - layout.EBDA, Type: Reserved})
			m = append(m, clip(layout.HighMemory, r.End(), r)...)
			continue
		}
		m = append(m, Entry{Addr: r.Start, Size: r.Size, Type: RAM})
	}
	return m
}

// clip returns a RAM entry for [start, end) ∩ r, or nothing if that is empty.
func clip(start, end uint64, r layout.Region) []Entry {
	start = max(start, r.Start)
	end = min(end, r.End())
	if end <= start {
		return nil
	}
	return []Entry{{Addr: start, Size: end - start, Type: RAM}}
}

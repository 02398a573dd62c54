// Package mptable writes the Intel MultiProcessor Specification 1.4 tables
// (the "_MP_" floating pointer and the "PCMP" configuration table) that tell a
// guest without ACPI where its CPUs, IOAPIC and ISA interrupts are.
package mptable

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmmdev/vmm/layout"
)

// Sentinel errors callers can branch on.
var (
	// ErrCPUs is returned for a CPU count the table cannot describe.
	ErrCPUs = errors.New("mptable: CPU count out of range")
	// ErrTooLarge is returned when the tables do not fit their area.
	ErrTooLarge = errors.New("mptable: tables do not fit the MP table area")
)

// MaxCPUs is the most CPUs the table describes: APIC ids are 8 bits, 0xff is
// the broadcast id, and the IOAPIC takes the id after the last CPU.
const MaxCPUs = 254

// Sizes of the structures (MP spec 1.4, chapter 4).
const (
	floatingSize  = 16
	headerSize    = 44
	processorSize = 20
	entrySize     = 8 // bus, IOAPIC, I/O and local interrupt entries
)

// Entry types.
const (
	entryProcessor = 0
	entryBus       = 1
	entryIOAPIC    = 2
	entryIOIntr    = 3
	entryLocalIntr = 4
)

// Interrupt types of I/O and local interrupt entries.
const (
	intINT    = 0
	intNMI    = 1
	intExtINT = 3
)

const (
	specRev       = 4    // MP spec 1.4
	lapicVersion  = 0x14 // integrated local APIC
	ioapicVersion = 0x11
	cpuEnabled    = 1 << 0
	cpuBSP        = 1 << 1
	// cpuSignature is family 6, model 0, stepping 0; cpuFeatures has FPU
	// (bit 0) and APIC (bit 9), the two the spec says an MP system has.
	cpuSignature = 0x600
	cpuFeatures  = 1<<0 | 1<<9
	isaBusID     = 0
	allLAPICs    = 0xff
	isaIRQs      = 16
)

// Size is the number of bytes Write puts at layout.MPTable for cpus CPUs.
func Size(cpus int) int {
	return floatingSize + headerSize + processorSize*cpus + entrySize*fixedEntries
}

// fixedEntries counts the 8-byte entries: ISA bus, IOAPIC, 15 ISA interrupts
// (IRQ2 is the cascade and has none) and 2 local interrupts.
const fixedEntries = 1 + 1 + (isaIRQs - 1) + 2

// Write builds the tables for cpus CPUs and writes them at layout.MPTable.
func Write(mem io.WriterAt, cpus int) error {
	b, err := Build(cpus)
	if err != nil {
		return err
	}
	if _, err := mem.WriteAt(b, layout.MPTable); err != nil {
		return fmt.Errorf("mptable: writing %d bytes at %#x: %w", len(b), layout.MPTable, err)
	}
	return nil
}

// Build returns the floating pointer followed by the configuration table, laid
// out for guest-physical address layout.MPTable.
func Build(cpus int) ([]byte, error) {
	if cpus < 1 || cpus > MaxCPUs {
		return nil, fmt.Errorf("%w: %d, want 1 to %d", ErrCPUs, cpus, MaxCPUs)
	}
	size := Size(cpus)
	if layout.MPTable+size > layout.MPTableEnd {
		return nil, fmt.Errorf("%w: %d bytes at %#x, area ends at %#x", ErrTooLarge, size, layout.MPTable, layout.MPTableEnd)
	}
	ioapicID := byte(cpus)

	cfg := make([]byte, headerSize, size-floatingSize)
	for i := range cpus {
		flags := byte(cpuEnabled)
		if i == 0 {
			flags |= cpuBSP
		}
		e := []byte{entryProcessor, byte(i), lapicVersion, flags}
		e = binary.LittleEndian.AppendUint32(e, cpuSignature)
		e = binary.LittleEndian.AppendUint32(e, cpuFeatures)
		cfg = append(cfg, append(e, make([]byte, 8)...)...)
	}
	cfg = append(cfg, entryBus, isaBusID, 'I', 'S', 'A', ' ', ' ', ' ')
	cfg = binary.LittleEndian.AppendUint32(append(cfg, entryIOAPIC, ioapicID, ioapicVersion, 1), layout.IOAPICBase)
	for irq := range byte(isaIRQs) {
		pin := irq
		switch irq {
		case 0:
			pin = 2 // the PIT is wired to IOAPIC pin 2 on a PC
		case 2:
			continue // the PIC cascade; its pin carries IRQ0
		}
		// Flags 0: polarity and trigger conform to the ISA bus (edge, high).
		cfg = append(cfg, entryIOIntr, intINT, 0, 0, isaBusID, irq, ioapicID, pin)
	}
	cfg = append(cfg, entryLocalIntr, intExtINT, 0, 0, isaBusID, 0, allLAPICs, 0)
	cfg = append(cfg, entryLocalIntr, intNMI, 0, 0, isaBusID, 0, allLAPICs, 1)

	copy(cfg[0:4], "PCMP")
	binary.LittleEndian.PutUint16(cfg[4:], uint16(len(cfg)))
	cfg[6] = specRev
	copy(cfg[8:16], "VMMDEV  ")
	copy(cfg[16:28], "VMM         ")
	binary.LittleEndian.PutUint16(cfg[34:], uint16(cpus+fixedEntries))
	binary.LittleEndian.PutUint32(cfg[36:], layout.LAPICBase)
	cfg[7] = checksum(cfg)

	fp := make([]byte, floatingSize)
	copy(fp[0:4], "_MP_")
	binary.LittleEndian.PutUint32(fp[4:], layout.MPTable+floatingSize)
	fp[8] = 1 // length in 16-byte units
	fp[9] = specRev
	// Feature bytes stay zero: byte 1 = 0 means a configuration table is
	// present; IMCRP clear means virtual wire mode, there is no IMCR.
	fp[10] = checksum(fp)

	return append(fp, cfg...), nil
}

// checksum returns the byte that makes b sum to zero; b's checksum byte must
// be zero when it is called.
func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

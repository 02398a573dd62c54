package acpi

import (
	"encoding/binary"

	"github.com/vmmdev/vmm/layout"
)

// MADT interrupt controller structure types (ACPI 6.5 §5.2.12).
const (
	madtLocalAPIC      = 0
	madtIOAPIC         = 1
	madtSourceOverride = 2
	madtLocalAPICNMI   = 4
)

const (
	madtPCATCompat = 1 << 0 // dual 8259s present
	lapicEnabled   = 1 << 0
	allProcessors  = 0xff
	isaBus         = 0
	// MPS INTI flags: polarity bits 0-1, trigger mode bits 2-3.
	intiConforming  = 0
	intiActiveHigh  = 1 << 0
	intiLevel       = 3 << 2
	sciOverrideFlag = intiActiveHigh | intiLevel // 0x000d
)

// madt lists one enabled local APIC per CPU (UID = APIC id = index), the
// IOAPIC (id = cpus, GSI base 0), the PC's IRQ0 -> GSI 2 override, the SCI
// as a level-triggered active-high interrupt, and NMI on LINT1 of every CPU.
func madt(cpus int) SDT {
	b := binary.LittleEndian.AppendUint32(nil, layout.LAPICBase)
	b = binary.LittleEndian.AppendUint32(b, madtPCATCompat)
	for i := range cpus {
		b = binary.LittleEndian.AppendUint32(append(b, madtLocalAPIC, 8, byte(i), byte(i)), lapicEnabled)
	}
	b = append(b, madtIOAPIC, 12, byte(cpus), 0)
	b = binary.LittleEndian.AppendUint32(b, layout.IOAPICBase)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = sourceOverride(b, 0, 2, intiConforming)
	b = sourceOverride(b, layout.SCIIRQ, layout.SCIIRQ, sciOverrideFlag)
	b = binary.LittleEndian.AppendUint16(append(b, madtLocalAPICNMI, 6, allProcessors), intiConforming)
	b = append(b, 1) // LINT1
	return SDT{Signature: "APIC", Revision: 5, Body: b}
}

func sourceOverride(b []byte, irq byte, gsi uint32, flags uint16) []byte {
	b = append(b, madtSourceOverride, 10, isaBus, irq)
	b = binary.LittleEndian.AppendUint32(b, gsi)
	return binary.LittleEndian.AppendUint16(b, flags)
}

package acpi

import (
	"encoding/binary"

	"github.com/vmmdev/vmm/layout"
)

// FADT field offsets from the start of the table (ACPI 6.5 table 5.9).
const (
	fadtSCIInt       = 46
	fadtBootArch     = 109
	fadtFlags        = 112
	fadtResetReg     = 116
	fadtResetValue   = 128
	fadtMinorVersion = 131
	fadtXDSDT        = 140
	fadtSleepControl = 244
	fadtSleepStatus  = 256
	fadtHypervisorID = 268
	fadtLength       = 276
)

// FADT flags (ACPI 6.5 table 5.10).
const (
	flagWBINVD        = 1 << 0
	flagProcC1        = 1 << 2
	flagPowerButton   = 1 << 4 // set: no fixed-feature power button
	flagSleepButton   = 1 << 5 // set: no fixed-feature sleep button
	flagResetRegSup   = 1 << 10
	flagHWReducedACPI = 1 << 20
)

// IA-PC boot architecture flags (ACPI 6.5 table 5.11).
const (
	bootLegacyDevices = 1 << 0 // ISA-style devices (COM1) the OS must find from the DSDT
	bootVGANotPresent = 1 << 2
	// 8042 present (bit 1) stays clear: the i8042 has no keyboard or mouse and
	// no interrupt, only the reset line, and a hardware-reduced platform has
	// no legacy PIC IRQs for Linux to probe it with. Linux still resets
	// through port 0x64 when the reset register fails. MSI-not-supported
	// (bit 3), PCIe ASPM controls (bit 4) and CMOS RTC not present (bit 5)
	// stay clear: MSIs work, there is no ASPM, the RTC is in the DSDT.
)

// Generic Address Structure address space ids and access sizes.
const (
	gasSystemIO   = 1
	gasAccessByte = 1
)

// HypervisorVendor is the FADT's hypervisor vendor identity.
const HypervisorVendor = "VMMDEV  "

// fadt is a revision 6 (ACPI 6.5) hardware-reduced FADT: no PM1/GPE blocks or
// FACS; power-off goes through the sleep control register and reset through
// the reset register, both byte-wide I/O ports. X_DSDT is a pointer patched
// at placement.
func fadt() SDT {
	b := make([]byte, fadtLength-headerSize)
	at := func(off int) []byte { return b[off-headerSize:] }

	binary.LittleEndian.PutUint16(at(fadtSCIInt), layout.SCIIRQ)
	binary.LittleEndian.PutUint16(at(fadtBootArch), bootLegacyDevices|bootVGANotPresent)
	binary.LittleEndian.PutUint32(at(fadtFlags),
		flagWBINVD|flagProcC1|flagPowerButton|flagSleepButton|flagResetRegSup|flagHWReducedACPI)
	// Linux on a hardware-reduced platform without EFI reboots through the
	// BIOS (the reset vector stub) unless reboot=a asks for this register.
	putGAS(at(fadtResetReg), gasSystemIO, 8, gasAccessByte, layout.PortReset)
	at(fadtResetValue)[0] = layout.ResetValue
	at(fadtMinorVersion)[0] = 5 // ACPI 6.5
	putGAS(at(fadtSleepControl), gasSystemIO, 8, gasAccessByte, layout.PortSleepControl)
	putGAS(at(fadtSleepStatus), gasSystemIO, 8, gasAccessByte, layout.PortSleepStatus)
	copy(at(fadtHypervisorID), HypervisorVendor)
	return SDT{Signature: "FACP", Revision: 6, Body: b}
}

// putGAS writes a 12-byte Generic Address Structure.
func putGAS(b []byte, space, bitWidth, accessSize byte, addr uint64) {
	b[0], b[1], b[2], b[3] = space, bitWidth, 0, accessSize
	binary.LittleEndian.PutUint64(b[4:], addr)
}

// Values the guest writes to the hardware-reduced sleep registers
// (ACPI 6.5 §4.8.3.7): Linux's acpi_hw_extended_sleep clears WakeStatus in
// the status register, then writes SLP_TYP<<2 | SleepEnable to the control
// register; for S5 that is layout.SleepTypeS5<<2 | 0x20.
const (
	SleepTypeShift = 2
	SleepTypeMask  = 0x1c
	SleepEnable    = 0x20
	WakeStatus     = 0x80
)

// DecodeSleepControl splits a byte written to the sleep control register into
// the requested sleep type and whether SLP_EN is set.
func DecodeSleepControl(v byte) (sleepType byte, enable bool) {
	return (v & SleepTypeMask) >> SleepTypeShift, v&SleepEnable != 0
}

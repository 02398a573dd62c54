package acpi

import (
	"encoding/binary"

	"github.com/vmmdev/vmm/layout"
)

// FADT field offsets from the start of the table (ACPI 6.5 table 5.9).
const (
	fadtFirmwareCtrl = 36
	fadtSCIInt       = 46
	fadtPM1aEvtBlk   = 56
	fadtPM1aCntBlk   = 64
	fadtPMTmrBlk     = 76
	fadtPM1EvtLen    = 88
	fadtPM1CntLen    = 89
	fadtPMTmrLen     = 91
	fadtXFirmwareCtl = 132
	fadtXPM1aEvtBlk  = 148
	fadtXPM1aCntBlk  = 172
	fadtXPMTmrBlk    = 208
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

// fadt is a revision 6 (ACPI 6.5) FADT. Without pm it is hardware-reduced:
// no PM1/GPE blocks or FACS; power-off goes through the sleep control
// register. With pm (firmware mode) it describes a PC: the PM1a event and
// control blocks and the PM timer at pm.Base, a FACS, and power-off through
// PM1a_CNT. Either way reset goes through the reset register. X_DSDT (and
// X_FIRMWARE_CTRL) are pointers patched at placement.
func fadt(pm *PMBlock) SDT {
	b := make([]byte, fadtLength-headerSize)
	at := func(off int) []byte { return b[off-headerSize:] }

	binary.LittleEndian.PutUint16(at(fadtSCIInt), layout.SCIIRQ)
	binary.LittleEndian.PutUint16(at(fadtBootArch), bootLegacyDevices|bootVGANotPresent)
	flags := uint32(flagWBINVD | flagProcC1 | flagPowerButton | flagSleepButton | flagResetRegSup)
	if pm == nil {
		flags |= flagHWReducedACPI
	}
	binary.LittleEndian.PutUint32(at(fadtFlags), flags)
	// Linux on a hardware-reduced platform without EFI reboots through the
	// BIOS (the reset vector stub) unless reboot=a asks for this register.
	putGAS(at(fadtResetReg), gasSystemIO, 8, gasAccessByte, layout.PortReset)
	at(fadtResetValue)[0] = layout.ResetValue
	at(fadtMinorVersion)[0] = 5 // ACPI 6.5
	if pm == nil {
		putGAS(at(fadtSleepControl), gasSystemIO, 8, gasAccessByte, layout.PortSleepControl)
		putGAS(at(fadtSleepStatus), gasSystemIO, 8, gasAccessByte, layout.PortSleepStatus)
	} else {
		// The 32-bit block addresses and their X_ forms agree, as ACPICA checks.
		for _, blk := range []struct {
			off, xoff, lenOff int
			port              uint16
			n                 byte
		}{
			{fadtPM1aEvtBlk, fadtXPM1aEvtBlk, fadtPM1EvtLen, pm.Base + PM1EventOffset, 4},
			{fadtPM1aCntBlk, fadtXPM1aCntBlk, fadtPM1CntLen, pm.Base + PM1ControlOffset, 2},
			{fadtPMTmrBlk, fadtXPMTmrBlk, fadtPMTmrLen, pm.Base + PMTimerOffset, 4},
		} {
			binary.LittleEndian.PutUint32(at(blk.off), uint32(blk.port))
			at(blk.lenOff)[0] = blk.n
			putGAS(at(blk.xoff), gasSystemIO, 8*blk.n, 0, uint64(blk.port))
		}
	}
	copy(at(fadtHypervisorID), HypervisorVendor)
	return SDT{Signature: "FACP", Revision: 6, Body: b}
}

// PMBlock is a PC's ACPI power management I/O block (the PIIX4's): the
// PM1a event registers (status, enable) at Base, the PM1a control register
// at Base+4, the 24-bit PM timer at Base+8. Power-off writes
// layout.SleepTypeS5 into PM1a_CNT's SLP_TYP (bits 10-12) with SLP_EN
// (bit 13).
type PMBlock struct {
	Base uint16
	// S3 offers suspend to RAM: the DSDT gets \_S3 (layout.SleepTypeS3),
	// for a platform that parks the vCPUs and resumes at the FACS waking
	// vector.
	S3 bool
}

// Offsets in the PM block.
const (
	PM1EventOffset    = 0
	PM1ControlOffset  = 4
	PMTimerOffset     = 8
	PM1SleepTypeShift = 10
	PM1SleepTypeMask  = 7 << PM1SleepTypeShift
	PM1SleepEnable    = 1 << 13
	PM1SCIEnable      = 1 << 0
)

// facsLength is the FACS's size; it has no checksum.
const facsLength = 64

// facs is an empty ACPI 2.0+ FACS (no waking vector, no global lock
// owner), which a non-reduced FADT must point to.
func facs() []byte {
	b := make([]byte, facsLength)
	copy(b, "FACS")
	binary.LittleEndian.PutUint32(b[4:], facsLength)
	b[32] = 2 // version
	return b
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

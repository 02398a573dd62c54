package acpi

import (
	"fmt"

	"github.com/vmmdev/vmm/firmware/acpi/aml"
	"github.com/vmmdev/vmm/layout"
)

// dsdtBody is the DSDT's AML: the S5 sleep type for power-off (and S3's
// when the platform offers it), a processor
// device per CPU (matched to the MADT by _UID), COM1, the RTC, the pvpanic device and
// whatever cfg.Devices adds to \_SB.
func dsdtBody(cfg Config) []byte {
	sb := make([]aml.Term, 0, cfg.CPUs+2+len(cfg.Devices))
	for i := range cfg.CPUs {
		sb = append(sb, aml.Device(fmt.Sprintf("C%03X", i),
			aml.Name("_HID", aml.String("ACPI0007")),
			aml.Name("_UID", aml.Int(i)),
		))
	}
	sb = append(sb,
		aml.Device("COM1",
			aml.Name("_HID", aml.EISAID("PNP0501")),
			aml.Name("_UID", aml.One),
			aml.Name("_CRS", aml.ResourceTemplate(
				aml.IO(true, layout.PortCOM1, layout.PortCOM1, 0, 8),
				aml.IRQNoFlags(layout.IRQCOM1),
			)),
		),
		// The CMOS RTC, so Linux binds rtc_cmos with its IRQ 8 routed
		// through the IOAPIC: a hardware-reduced platform has no legacy
		// PIC IRQs for a directly probed RTC.
		aml.Device("RTC",
			aml.Name("_HID", aml.EISAID("PNP0B00")),
			aml.Name("_CRS", aml.ResourceTemplate(
				aml.IO(true, layout.PortCMOS, layout.PortCMOS, 0, 2),
				aml.IRQNoFlags(layout.IRQRTC),
			)),
		),
		// QEMU's ISA pvpanic device; Linux's pvpanic driver binds to QEMU0001.
		aml.Device("PEVT",
			aml.Name("_HID", aml.String("QEMU0001")),
			aml.Name("_CRS", aml.ResourceTemplate(
				aml.IO(true, layout.PortPVPanic, layout.PortPVPanic, 1, 1),
			)),
			aml.Method("_STA", 0, false, aml.Return(aml.Int(0x0f))),
		),
	)
	sb = append(sb, cfg.Devices...)
	terms := []aml.Term{aml.Name(`\_S5`, aml.Package(aml.Int(layout.SleepTypeS5), aml.Zero))}
	if cfg.PM != nil && cfg.PM.S3 {
		terms = append(terms, aml.Name(`\_S3`, aml.Package(aml.Int(layout.SleepTypeS3), aml.Zero)))
	}
	return aml.Terms(append(terms, aml.Scope(`\_SB`, sb...))...).AML()
}

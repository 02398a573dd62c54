package vmm

import (
	"fmt"
	"time"

	"github.com/vmmdev/vmm/devices/piix"
	"github.com/vmmdev/vmm/firmware/acpi"
	"github.com/vmmdev/vmm/layout"
)

// ACPI flavours of direct boot (--acpi).
const (
	// ACPIPC is a PC's ACPI: the PIIX4 PM block at layout.PortPMBase
	// (PM1 event and control, the 3.58 MHz PM timer), a FACS, the 8259
	// and the PIT announced. What QEMU's pc machine and firmware boot give.
	ACPIPC = "pc"
	// ACPIReduced is hardware-reduced ACPI: sleep control/status and
	// reset registers only, no PM timer, no legacy PIC or PIT for the OS.
	ACPIReduced = "reduced"
)

// softOff says whether entering sleep type typ through PM1 control powers
// off: the DSDT's \_S5 value, and 0 too, which OVMF's
// ResetSystem(EfiResetShutdown) writes at its fixed PM base whatever the
// DSDT says (QEMU's PIIX4 takes 0 as soft-off as well).
func softOff(typ uint8) bool { return typ == layout.SleepTypeS5 || typ == 0 }

// newPM is the PIIX4 PM function, its PM1 control ending the VM on a
// soft-off sleep type.
func (m *Machine) newPM() (*piix.PM, error) {
	pm, err := piix.NewPM(m.pio, time.Now, func(typ uint8) {
		switch {
		case softOff(typ):
			m.latch.Stop(StopReason{Kind: StopPowerOff, Source: "acpi", Detail: "S5 soft-off (PM1a control)"})
		case typ == layout.SleepTypeS3 && m.s3Offered():
			m.suspend()
		}
	}, m.log)
	if err != nil {
		return nil, fmt.Errorf("PIIX4 PM: %w", err)
	}
	m.pm = pm
	return pm, nil
}

// directPM places the PM block for direct boot's PC ACPI as firmware would
// (PMBA, then PM I/O enable), offering S3. Its PCI function stays off the bus: nothing
// but the FADT leads an OS to the block, and no firmware moves it.
func (m *Machine) directPM() (*acpi.PMBlock, error) {
	if m.cfg.ACPI == ACPIReduced {
		return nil, nil
	}
	pm, err := m.newPM()
	if err != nil {
		return nil, err
	}
	if err := pm.Place(layout.PortPMBase); err != nil {
		return nil, err
	}
	// vmm resumes from S3 itself, as the firmware would (sleep.go), with
	// every AP reset for the OS to start again (cpureset.go).
	m.sleep = newSleeper(m.cfg.CPUs, time.Now)
	return &acpi.PMBlock{Base: layout.PortPMBase, S3: true}, nil
}

// validateACPI checks --acpi.
func (c *Config) validateACPI() error {
	switch c.ACPI {
	case "", ACPIPC:
		return nil
	case ACPIReduced:
		if c.Firmware != "" {
			return invalid("--acpi %s: firmware boot has the firmware's PC ACPI; --acpi applies to --kernel", ACPIReduced)
		}
		return nil
	}
	return invalid("--acpi: %q is not %s or %s", c.ACPI, ACPIPC, ACPIReduced)
}

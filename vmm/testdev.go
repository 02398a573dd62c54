package vmm

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/devices/bus"
	"github.com/vmmdev/vmm/devices/testdev"
	"github.com/vmmdev/vmm/layout"
)

// validateTestdev refuses a firmware image that would cover pc-testdev's
// MMIO window (one within 64 KiB of layout.FirmwareMaxSize).
func (c *Config) validateTestdev() error {
	if !c.Testdev || c.Firmware == "" {
		return nil
	}
	size, err := checkFile("--firmware", FirmwarePath(c.Firmware), layout.FirmwareMaxSize)
	if err != nil {
		return err
	}
	if uint64(layout.FirmwareTop)-uint64(size) < layout.TestdevMMIO+testdev.MMIOSize {
		return invalid("--testdev: pc-testdev's window [%#x, %#x) lies inside the %d-byte firmware image mapped below 4 GiB",
			uint64(layout.TestdevMMIO), uint64(layout.TestdevMMIO+testdev.MMIOSize), size)
	}
	return nil
}

// setupTestdev registers QEMU's test devices when cfg.Testdev asks.
func (m *Machine) setupTestdev() error {
	if !m.cfg.Testdev {
		return nil
	}
	pc := testdev.NewPC(m.flushPage, func(line uint32, high bool) {
		irqLine{m.vm, line, m.log}.SetLevel(high)
	})
	for _, r := range []struct {
		base, size uint64
		dev        bus.Device
		name       string
	}{
		{layout.PortTestdevScratch, testdev.ScratchSize, pc.Scratch(), "pc-testdev"},
		{layout.PortTestdevFlush, testdev.FlushSize, pc.Flush(), "pc-testdev-flush"},
		{layout.PortTestdevByteScratch, testdev.ScratchSize, pc.Scratch(), "pc-testdev-byte"},
		{layout.PortTestdevIRQ, testdev.IRQLines, pc.IRQ(), "pc-testdev-irq"},
	} {
		if err := m.pio.Register(r.base, r.size, r.dev, r.name); err != nil {
			return fmt.Errorf("register %s: %w", r.name, err)
		}
	}
	if err := m.mmio.Register(layout.TestdevMMIO, testdev.MMIOSize, pc.MMIO(), "pc-testdev-mmio"); err != nil {
		return fmt.Errorf("register pc-testdev-mmio: %w", err)
	}
	return m.addPCITestdev()
}

// addPCITestdev puts pci-testdev on the bus with its BARs placed, its
// eventfd tests served by KVM ioeventfds.
func (m *Machine) addPCITestdev() error {
	d, err := testdev.NewPCITestdev(ioEvents{vm: m.vm, log: m.log}, m.log)
	if err != nil {
		return err
	}
	m.pci.testdev = d
	if _, err := m.pci.bus.Add(d.Function()); err != nil {
		return fmt.Errorf("pci-testdev: %w", err)
	}
	if err := m.placeBARs(d.Function()); err != nil {
		return fmt.Errorf("pci-testdev: %w", err)
	}
	return nil
}

// flushPage is pc-testdev's flush: taking the host mapping of the page away
// and back makes KVM drop its mapping (MMU notifier), as QEMU's mprotect
// pair does; the guest's next access faults it in again.
func (m *Machine) flushPage(gpa uint64) {
	page, err := m.mem.Slice(gpa, 4096)
	if err != nil {
		m.log.Debug("pc-testdev flush outside RAM", "gpa", fmt.Sprintf("%#x", gpa))
		return
	}
	if err := unix.Mprotect(page, unix.PROT_NONE); err != nil {
		m.log.Warn("pc-testdev flush", "gpa", fmt.Sprintf("%#x", gpa), "err", err)
		return
	}
	if err := unix.Mprotect(page, unix.PROT_READ|unix.PROT_WRITE); err != nil {
		m.log.Warn("pc-testdev flush", "gpa", fmt.Sprintf("%#x", gpa), "err", err)
	}
}

// setupHyperVTestdev adds hyperv-testdev over the partition's SynIC when
// --testdev comes with --hyperv synic; without SynIC there is nothing for it
// to drive.
func (m *Machine) setupHyperVTestdev() error {
	if !m.cfg.Testdev || m.hv == nil || !m.cfg.HyperV.SynIC {
		return nil
	}
	d := testdev.NewHyperV(m.hv.part, m.log)
	if err := m.pio.Register(layout.PortHyperVTestdev, testdev.HyperVSize, d, "hyperv-testdev"); err != nil {
		return fmt.Errorf("register hyperv-testdev: %w", err)
	}
	return nil
}

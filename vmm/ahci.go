package vmm

import (
	"errors"
	"fmt"

	"github.com/vmmdev/vmm/devices/ahci"
	"github.com/vmmdev/vmm/storage/block"
)

// ahciController is the AHCI HBA with its images: the if=ahci disks on
// the first ports, in --disk order, then the --cdrom drives.
type ahciController struct {
	hba    *ahci.HBA
	imgs   []block.Device
	drives []ahci.Drive // by port
}

// addAHCI puts one AHCI controller on the PCI bus when an AHCI disk or a
// CD-ROM is configured.
func (m *Machine) addAHCI() error {
	type drive struct {
		path, serial, format   string
		readOnly, cd, snapshot bool
	}
	var ds []drive
	for _, d := range m.cfg.Disks {
		if d.Interface == DiskAHCI {
			ds = append(ds, drive{path: d.Path, serial: d.Serial, format: d.Format, readOnly: d.ReadOnly, snapshot: d.Snapshot})
		}
	}
	for _, p := range m.cfg.CDROMs {
		ds = append(ds, drive{path: p, readOnly: true, cd: true})
	}
	if len(ds) == 0 {
		return nil
	}
	c := &ahciController{}
	m.pci.ahci = c
	for i, d := range ds {
		flag := "--disk"
		if d.cd {
			flag = "--cdrom"
		}
		img, err := block.Open(block.Options{Path: d.path, ReadOnly: d.readOnly, Format: d.format, Snapshot: d.snapshot}, m.log)
		if err != nil {
			if errors.Is(err, block.ErrBusy) {
				return invalid("%s %s: %v", flag, d.path, err)
			}
			return fmt.Errorf("%s %s: %w", flag, d.path, err)
		}
		c.imgs = append(c.imgs, img)
		serial := d.serial
		if serial == "" {
			serial = fmt.Sprintf("vmm-sata%d", i)
		}
		c.drives = append(c.drives, ahci.Drive{Image: img, CDROM: d.cd, Serial: serial})
	}
	hba, err := ahci.New(ahci.Config{Name: "ahci0", Drives: c.drives, Mem: m.mem, MSI: m.routes.newTable("ahci0"),
		Log: m.log})
	if err != nil {
		return fmt.Errorf("AHCI controller: %w", err)
	}
	c.hba = hba
	slot, err := m.pci.bus.Add(hba.Function())
	if err != nil {
		return fmt.Errorf("ahci0: %w", err)
	}
	if err := m.placeBARs(hba.Function()); err != nil {
		return fmt.Errorf("ahci0: %w", err)
	}
	for i, d := range ds {
		m.log.Info("ahci", "port", i, "path", d.path, "slot", slot, "cdrom", d.cd, "readonly", d.readOnly, "snapshot", d.snapshot,
			"serial", c.drives[i].Serial)
	}
	return nil
}

// close stops the ports, then flushes and closes the images.
func (c *ahciController) close() error {
	if c == nil {
		return nil
	}
	if c.hba != nil {
		c.hba.Close()
	}
	var errs []error
	for _, img := range c.imgs {
		errs = append(errs, img.Close())
	}
	return errors.Join(errs...)
}

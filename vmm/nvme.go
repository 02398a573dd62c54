package vmm

import (
	"errors"
	"fmt"

	"github.com/vmmdev/vmm/devices/nvme"
	"github.com/vmmdev/vmm/storage/block"
)

// nvmeDisk is one --disk ...,if=nvme: its controller and the image behind it.
type nvmeDisk struct {
	ctrl *nvme.Controller
	img  block.Device
}

// addNVMeDisks puts an NVMe controller on the PCI bus for every NVMe disk,
// in --disk order, with as many I/O queue pairs as vCPUs.
func (m *Machine) addNVMeDisks() error {
	n := 0
	for _, d := range m.cfg.Disks {
		if d.Interface != DiskNVMe {
			continue
		}
		name := fmt.Sprintf("nvme%d", n)
		n++
		img, err := block.Open(block.Options{Path: d.Path, ReadOnly: d.ReadOnly, Format: d.Format, Snapshot: d.Snapshot}, m.log)
		if err != nil {
			if errors.Is(err, block.ErrBusy) {
				return invalid("--disk %s: %v", d.Path, err)
			}
			return fmt.Errorf("--disk %s: %w", d.Path, err)
		}
		serial := d.Serial
		if serial == "" {
			// Linux needs every controller's serial to differ.
			serial = "vmm-" + name
		}
		ctrl, err := nvme.New(nvme.Config{Name: name, Image: img, Serial: serial, IOQueues: m.cfg.CPUs,
			Mem: m.mem, MSI: m.routes.newTable(name), Events: ioEvents{vm: m.vm, log: m.log}, Log: m.log})
		if err != nil {
			img.Close()
			return fmt.Errorf("--disk %s: %w", d.Path, err)
		}
		m.pci.nvme = append(m.pci.nvme, nvmeDisk{ctrl: ctrl, img: img})
		slot, err := m.pci.bus.Add(ctrl.Function())
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := m.placeBARs(ctrl.Function()); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		m.log.Info("nvme", "disk", name, "path", d.Path, "slot", slot, "blocks", img.Sectors(),
			"readonly", d.ReadOnly, "snapshot", d.Snapshot, "serial", serial, "io_queues", ctrl.IOQueues())
	}
	return nil
}

// closeNVMe stops the controllers, then flushes and closes their images.
func closeNVMe(ds []nvmeDisk) error {
	var errs []error
	for _, d := range ds {
		d.ctrl.Close()
		errs = append(errs, d.img.Close())
	}
	return errors.Join(errs...)
}

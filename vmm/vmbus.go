package vmm

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vmmdev/vmm/devices/scsi"
	"github.com/vmmdev/vmm/devices/vmbus"
	"github.com/vmmdev/vmm/devices/vmbus/ic"
	"github.com/vmmdev/vmm/devices/vmbus/storvsc"
	"github.com/vmmdev/vmm/firmware/acpi"
	"github.com/vmmdev/vmm/firmware/acpi/aml"
	"github.com/vmmdev/vmm/storage/block"
	"github.com/vmmdev/vmm/vmm/hyperv"
)

// heartbeatEvery is how often the host asks the guest for a heartbeat
// (the report shows how many the guest answered).
const heartbeatEvery = time.Second

// vmbusMachine is the VMBus host (--vmbus) on the Hyper-V partition: the
// bus and its integration services.
type vmbusMachine struct {
	// beating starts the heartbeat ticker with the first vCPU.
	beating   sync.Once
	bus       *vmbus.Bus
	heartbeat *ic.Heartbeat
	shutdown  *ic.Shutdown
	timesync  *ic.TimeSync
	// scsi is the synthetic SCSI controller of the if=vmbus disks (nil:
	// none), imgs their images.
	scsi *storvsc.Controller
	imgs []block.Device
}

// storvscInstance names the SCSI controller (its VMBus instance GUID).
var storvscInstance = vmbus.MustGUID("9a5a0e8e-5d3c-4b57-8f6e-766d6d000001")

// hypervWithVMBus is the report's "hyperv" object with VMBus: the
// partition's summary and a "vmbus" member.
type hypervWithVMBus struct {
	hyperv.Summary
	VMBus vmbusSummary `json:"vmbus"`
}

// vmbusSummary is the report's view of VMBus.
type vmbusSummary struct {
	Bus       vmbus.Stats        `json:"bus"`
	Heartbeat ic.HeartbeatStatus `json:"heartbeat"`
	Shutdown  ic.ShutdownStatus  `json:"shutdown"`
	TimeSync  ic.TimeSyncStatus  `json:"timesync"`
	// Storvsc is the synthetic SCSI controller with its LUNs.
	Storvsc *storvsc.Stats `json:"storvsc,omitempty"`
}

func (v *vmbusMachine) summary() vmbusSummary {
	s := vmbusSummary{Bus: v.bus.Stats(), Heartbeat: v.heartbeat.Status(), Shutdown: v.shutdown.Status(),
		TimeSync: v.timesync.Status()}
	if v.scsi != nil {
		st := v.scsi.Stats()
		s.Storvsc = &st
	}
	return s
}

// acpiDevices adds the VMBus device to the DSDT's \_SB devices when
// --vmbus is on.
func (m *Machine) acpiDevices(devs []aml.Term) []aml.Term {
	if m.cfg.VMBus {
		devs = append(devs, acpi.VMBusDevice())
	}
	return devs
}

// setupVMBus builds the VMBus host on the partition (after setupHyperV):
// HvPostMessage and HvSignalEvent on connections no test device took, and
// EOM, reach the bus; the heartbeat, shutdown and time sync services are
// offered.
func (m *Machine) setupVMBus() error {
	if !m.cfg.VMBus {
		return nil
	}
	if m.hv == nil || !m.cfg.HyperV.SynIC {
		return errors.New("--vmbus needs --hyperv with synic")
	}
	bus := vmbus.New(vmbus.Config{Mem: m.mem, Host: m.hv.part.BusHost(), VPs: m.cfg.CPUs, Log: m.log})
	v := &vmbusMachine{bus: bus, heartbeat: ic.NewHeartbeat(nil), shutdown: ic.NewShutdown(nil),
		timesync: ic.NewTimeSync(nil, m.hv.clock.Now)}
	m.vmbus = v
	devs := []vmbus.Device{v.heartbeat, v.shutdown, v.timesync}
	if err := m.addStorvsc(v); err != nil {
		return err
	}
	if v.scsi != nil {
		devs = append(devs, v.scsi)
	}
	for _, d := range devs {
		if _, err := bus.Add(d); err != nil {
			return fmt.Errorf("vmbus: %w", err)
		}
	}
	m.hv.part.AttachBus(bus)
	return nil
}

// addStorvsc makes the if=vmbus disks LUNs 0, 1, ... of one synthetic
// SCSI controller, in --disk order, with up to one channel per vCPU.
func (m *Machine) addStorvsc(v *vmbusMachine) error {
	var luns []*scsi.Disk
	for _, d := range m.cfg.Disks {
		if d.Interface != DiskVMBus {
			continue
		}
		lun := len(luns)
		img, err := block.Open(block.Options{Path: d.Path, ReadOnly: d.ReadOnly, Format: d.Format, Snapshot: d.Snapshot}, m.log)
		if err != nil {
			if errors.Is(err, block.ErrBusy) {
				return invalid("--disk %s: %v", d.Path, err)
			}
			return fmt.Errorf("--disk %s: %w", d.Path, err)
		}
		v.imgs = append(v.imgs, img)
		serial := d.Serial
		if serial == "" {
			serial = fmt.Sprintf("vmm-scsi%d", lun)
		}
		name := fmt.Sprintf("scsi0:0:%d", lun)
		luns = append(luns, scsi.NewDisk(name, img, serial, m.log))
		m.log.Info("storvsc", "disk", name, "path", d.Path, "blocks", img.Sectors(), "readonly", d.ReadOnly,
			"snapshot", d.Snapshot, "serial", serial)
	}
	if len(luns) == 0 {
		return nil
	}
	c, err := storvsc.New(storvsc.Config{Instance: storvscInstance, Disks: luns, Mem: m.mem, VPs: m.cfg.CPUs,
		Bus: v.bus, Log: m.log})
	if err != nil {
		return err
	}
	v.scsi = c
	return nil
}

// close stops the SCSI controller's workers, then flushes and closes
// its images.
func (v *vmbusMachine) close() error {
	if v == nil {
		return nil
	}
	if v.scsi != nil {
		v.scsi.Shutdown()
	}
	var errs []error
	for _, img := range v.imgs {
		errs = append(errs, img.Close())
	}
	v.imgs = nil
	return errors.Join(errs...)
}

// beat asks for a heartbeat every heartbeatEvery until the VM stops; the
// service itself skips beats while the channel is closed or a beat is
// unanswered.
func (v *vmbusMachine) beat(m *Machine) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-m.latch.Done():
			return
		case <-t.C:
			_ = v.heartbeat.Beat()
		}
	}
}

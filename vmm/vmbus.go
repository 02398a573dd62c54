package vmm

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vmmdev/vmm/devices/vmbus"
	"github.com/vmmdev/vmm/devices/vmbus/ic"
	"github.com/vmmdev/vmm/firmware/acpi"
	"github.com/vmmdev/vmm/firmware/acpi/aml"
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
}

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
}

func (v *vmbusMachine) summary() vmbusSummary {
	return vmbusSummary{Bus: v.bus.Stats(), Heartbeat: v.heartbeat.Status(), Shutdown: v.shutdown.Status(),
		TimeSync: v.timesync.Status()}
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
	for _, d := range []vmbus.Device{v.heartbeat, v.shutdown, v.timesync} {
		if _, err := bus.Add(d); err != nil {
			return fmt.Errorf("vmbus: %w", err)
		}
	}
	m.hv.part.AttachBus(bus)
	m.vmbus = v
	return nil
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

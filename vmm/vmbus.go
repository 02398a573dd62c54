package vmm

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	vnet "github.com/vmmdev/vmm/devices/virtio/net"
	"github.com/vmmdev/vmm/devices/vmbus"
	"github.com/vmmdev/vmm/devices/vmbus/ic"
	"github.com/vmmdev/vmm/devices/vmbus/netvsc"
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
	nics      []vmbusNIC
}

// vmbusNIC is a synthetic NIC (--net ...,if=vmbus) and its tap.
type vmbusNIC struct {
	dev *netvsc.Device
	tap *vnet.Tap
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
	NetVSC    []netvsc.Status    `json:"netvsc,omitempty"`
}

func (v *vmbusMachine) summary() vmbusSummary {
	s := vmbusSummary{Bus: v.bus.Stats(), Heartbeat: v.heartbeat.Status(), Shutdown: v.shutdown.Status(),
		TimeSync: v.timesync.Status()}
	for _, n := range v.nics {
		s.NetVSC = append(s.NetVSC, n.dev.Status())
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
	for _, d := range []vmbus.Device{v.heartbeat, v.shutdown, v.timesync} {
		if _, err := bus.Add(d); err != nil {
			return fmt.Errorf("vmbus: %w", err)
		}
	}
	m.vmbus = v
	if err := v.addNICs(m); err != nil {
		return err
	}
	m.hv.part.AttachBus(bus)
	return nil
}

// addNICs offers the synthetic NICs of --net ...,if=vmbus.
func (v *vmbusMachine) addNICs(m *Machine) error {
	for i, n := range m.cfg.NICs {
		if n.Interface != NICVMBus {
			continue
		}
		tap, err := vnet.OpenTap(n.Tap)
		if err != nil {
			return fmt.Errorf("--net tap=%s: %w", n.Tap, err)
		}
		mac := n.MAC
		if mac == nil {
			mac = randomMAC()
		}
		// The instance GUID names the NIC to the guest: the class's with
		// the NIC's index in the last field.
		inst := netvsc.Class
		inst[15] = byte(i)
		inst[14] = 0x76
		dev, err := netvsc.New(netvsc.Config{Mem: m.mem, Tap: tap, TapName: tap.Name(), MAC: mac, Instance: inst, Log: m.log})
		if err != nil {
			tap.Close()
			return fmt.Errorf("--net tap=%s: %w", n.Tap, err)
		}
		v.nics = append(v.nics, vmbusNIC{dev, tap})
		if _, err := v.bus.Add(dev); err != nil {
			return fmt.Errorf("vmbus: %w", err)
		}
		m.log.Info("netvsc", "nic", i, "tap", tap.Name(), "mac", mac.String())
	}
	return nil
}

// close stops the synthetic NICs and closes their taps.
func (v *vmbusMachine) close() error {
	var errs []error
	for _, n := range v.nics {
		n.dev.Stop()
		errs = append(errs, n.tap.Close())
	}
	v.nics = nil
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

// randomMAC is a random locally administered unicast address.
func randomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	_, _ = rand.Read(mac) // crypto/rand.Read does not fail
	mac[0] = mac[0]&^1 | 2
	return mac
}

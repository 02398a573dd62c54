package vmm

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmmdev/vmm/devices/scsi"
	vnet "github.com/vmmdev/vmm/devices/virtio/net"
	"github.com/vmmdev/vmm/devices/vmbus"
	"github.com/vmmdev/vmm/devices/vmbus/ic"
	"github.com/vmmdev/vmm/devices/vmbus/netvsc"
	"github.com/vmmdev/vmm/devices/vmbus/storvsc"
	"github.com/vmmdev/vmm/firmware/acpi"
	"github.com/vmmdev/vmm/firmware/acpi/aml"
	"github.com/vmmdev/vmm/storage/block"
	"github.com/vmmdev/vmm/vmm/hyperv"
)

// heartbeatEvery is how often the host asks the guest for a heartbeat
// (the report shows how many the guest answered) and polls KVP.
const heartbeatEvery = time.Second

// Bounds of the VMBus run-time options.
const (
	// minHeartbeatTimeout: beats are asked for every heartbeatEvery, so a
	// shorter timeout would fire between two healthy beats.
	minHeartbeatTimeout = 3 * heartbeatEvery
	maxKVPKeys          = 64
)

// DefaultShutdownTimeout is --shutdown-timeout's default: how long a
// signal waits for a guest asked to shut down over VMBus (Debian with
// systemd powers off in a few seconds).
const DefaultShutdownTimeout = 30 * time.Second

// vmbusMachine is the VMBus host (--vmbus) on the Hyper-V partition: the
// bus and its integration services.
type vmbusMachine struct {
	// beating starts the heartbeat ticker with the first vCPU.
	beating   sync.Once
	bus       *vmbus.Bus
	heartbeat *ic.Heartbeat
	shutdown  *ic.Shutdown
	timesync  *ic.TimeSync
	kvp       *ic.KVP
	// shuttingDown: vmm asked the guest to shut down (no heartbeat
	// timeout from then on: the guest stops beating as it goes).
	shuttingDown atomic.Bool
	// logged: the stalled waits already logged (beat's goroutine only).
	logged map[string]bool
	nics   []vmbusNIC
	// scsi is the synthetic SCSI controller of the if=vmbus disks (nil:
	// none), imgs their images.
	scsi *storvsc.Controller
	imgs []block.Device
}

// vmbusNIC is a synthetic NIC (--net ...,if=vmbus) and its tap.
type vmbusNIC struct {
	dev *netvsc.Device
	tap *vnet.Tap
	// unwatch stops the tap link watch (followTapLink).
	unwatch func()
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
	KVP       ic.KVPStatus       `json:"kvp"`
	NetVSC    []netvsc.Status    `json:"netvsc,omitempty"`
	// Storvsc is the synthetic SCSI controller with its LUNs.
	Storvsc *storvsc.Stats `json:"storvsc,omitempty"`
}

func (v *vmbusMachine) summary() vmbusSummary {
	s := vmbusSummary{Bus: v.bus.Stats(), Heartbeat: v.heartbeat.Status(), Shutdown: v.shutdown.Status(),
		TimeSync: v.timesync.Status(), KVP: v.kvp.Status()}
	for _, n := range v.nics {
		s.NetVSC = append(s.NetVSC, n.dev.Status())
	}
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
	bc := vmbus.Config{Mem: m.mem, Host: m.hv.part.BusHost(), VPs: m.cfg.CPUs, Log: m.log}
	if part := m.hv.part; part.Tracing() {
		// The VP the bus talks to is the guest's choice; 0 is where Linux
		// runs the connection.
		bc.Trace = func(dir, msg, detail string) { part.TraceVMBus(0, dir, msg, detail) }
	}
	// Channel signals through ioeventfds (signalRoutes), except where each
	// must stay a hypercall: traced, or where hyperv-testdev's event
	// connections, which come before the bus's, may claim a channel's.
	if part := m.hv.part; !part.Tracing() && !m.cfg.Testdev {
		bc.Host = signalRoutes{BusHost: part.BusHost(), e: ioEvents{vm: m.vm, log: m.log}, part: part}
	}
	bus := vmbus.New(bc)
	kvp, err := ic.NewKVP(m.cfg.KVP, nil)
	if err != nil {
		return fmt.Errorf("vmbus: %w", err)
	}
	v := &vmbusMachine{bus: bus, heartbeat: ic.NewHeartbeat(nil), timesync: ic.NewTimeSync(nil, m.hv.refTime), kvp: kvp}
	v.shutdown = ic.NewShutdown(func(accepted bool) {
		if !accepted {
			m.latch.Stop(StopReason{Kind: StopInterrupted, Source: "vmbus shutdown",
				Detail: "the guest refused the shutdown request"})
		}
	})
	if bc.Trace != nil {
		part := m.hv.part
		for _, n := range []interface {
			OnNegotiated(func(service, framework, version string))
		}{v.heartbeat, v.shutdown, v.timesync, v.kvp} {
			n.OnNegotiated(func(svc, fw, ver string) {
				part.TraceVMBus(0, "ic", svc, "framework "+fw+" version "+ver)
			})
		}
	}
	m.vmbus = v
	devs := []vmbus.Device{v.heartbeat, v.shutdown, v.timesync, v.kvp}
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
			mac = vnet.RandomMAC()
		}
		// The instance GUID names the NIC to the guest: the class's with
		// the NIC's index in the last field.
		inst := netvsc.Class
		inst[15] = byte(i)
		inst[14] = 0x76
		// With offloads the tap leaves checksums of the host's frames to
		// the NIC; it never hands over segmented ones (netvsc).
		offloads := tap.Offloads()
		if offloads {
			if err := tap.SetOffload(vnet.OffloadChecksum); err != nil {
				m.log.Warn("netvsc: no offloads: the tap refused checksum offload", "tap", tap.Name(), "err", err)
				offloads = false
			}
		}
		dev, err := netvsc.New(netvsc.Config{Mem: m.mem, Tap: tap, TapName: tap.Name(), MAC: mac, Instance: inst, Log: m.log,
			Offloads: offloads})
		if err != nil {
			tap.Close()
			return fmt.Errorf("--net tap=%s: %w", n.Tap, err)
		}
		v.nics = append(v.nics, vmbusNIC{dev, tap, followTapLink(tap.Name(), dev.SetLink, m.log)})
		if _, err := v.bus.Add(dev); err != nil {
			return fmt.Errorf("vmbus: %w", err)
		}
		m.log.Info("netvsc", "nic", i, "tap", tap.Name(), "mac", mac.String(), "offloads", offloads)
	}
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

// close removes the channels' signal ioeventfds, stops the synthetic NICs
// and closes their taps, then stops the SCSI controller's workers and
// flushes and closes its images.
func (v *vmbusMachine) close() error {
	if v == nil {
		return nil
	}
	if v.bus != nil {
		v.bus.Close()
	}
	var errs []error
	for _, n := range v.nics {
		n.unwatch()
		n.dev.Stop()
		errs = append(errs, n.tap.Close())
	}
	v.nics = nil
	if v.scsi != nil {
		v.scsi.Shutdown()
	}
	for _, img := range v.imgs {
		errs = append(errs, img.Close())
	}
	v.imgs = nil
	return errors.Join(errs...)
}

// beat asks for a heartbeat and polls KVP every heartbeatEvery until the
// VM stops; the services themselves skip requests while the channel is
// closed or a request is unanswered. With --heartbeat-timeout it ends a
// run whose guest stopped beating.
func (v *vmbusMachine) beat(m *Machine) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-m.latch.Done():
			return
		case now := <-t.C:
			_ = v.heartbeat.Beat()
			v.kvp.Poll()
			v.watch(m, now)
			if v.shuttingDown.Load() {
				continue
			}
			if lost, detail := heartbeatLost(v.heartbeat.Status(), now, m.cfg.HeartbeatTimeout); lost {
				m.log.Warn("vmbus: guest heartbeat lost", "detail", detail)
				m.latch.Stop(StopReason{Kind: StopHeartbeatLost, Source: "vmbus heartbeat", Detail: detail})
				return
			}
		}
	}
}

// stallAfter is how long a guest may wait on the bus (contact, GPADL,
// open) before vmm logs what it waits for: Linux answers in
// milliseconds, so seconds mean a stuck guest or host.
const stallAfter = 5 * time.Second

// watch logs, once each, guest waits on the bus older than stallAfter
// (the report's hyperv.vmbus.bus.waiting has them too).
func (v *vmbusMachine) watch(m *Machine, now time.Time) {
	for _, w := range v.bus.Stalled(now, stallAfter) {
		if v.logged == nil {
			v.logged = map[string]bool{}
		}
		key := w.Request + w.Since.String()
		if v.logged[key] || len(v.logged) > 64 {
			continue
		}
		v.logged[key] = true
		m.log.Warn("vmbus: guest waits on the host", "for", w.For, "request", w.Request,
			"since", now.Sub(w.Since).Round(time.Second), "answer_queued", w.Queued)
	}
}

// heartbeatLost says whether a guest that had answered heartbeats has
// answered none for longer than timeout (zero: never lost).
func heartbeatLost(s ic.HeartbeatStatus, now time.Time, timeout time.Duration) (bool, string) {
	if timeout <= 0 || s.Beats == 0 {
		return false, ""
	}
	if since := now.Sub(s.LastBeat); since > timeout {
		return true, fmt.Sprintf("no heartbeat for %v (after %d beats; channel %s)", since.Round(time.Second), s.Beats, s.State)
	}
	return false, ""
}

// gracefulShutdown is the run loop's answer to the first SIGINT/SIGTERM
// (stopLatch.wait): with the guest's shutdown channel open, vmm asks the
// guest to power off and waits ShutdownTimeout for it; nil without VMBus.
func (m *Machine) gracefulShutdown() func(cause string) (time.Duration, bool) {
	v := m.vmbus
	if v == nil || m.cfg.ShutdownTimeout <= 0 {
		return nil
	}
	return func(cause string) (time.Duration, bool) {
		if err := v.shutdown.Request(ic.PowerOff|ic.Forced, "vmm: "+cause); err != nil {
			m.log.Info("vmbus: no shutdown channel; stopping the guest", "signal", cause, "err", err)
			return 0, false
		}
		v.shuttingDown.Store(true)
		m.log.Info("vmbus: asked the guest to shut down", "signal", cause, "timeout", m.cfg.ShutdownTimeout)
		return m.cfg.ShutdownTimeout, true
	}
}

// validateVMBus checks the VMBus run-time options.
func (c *Config) validateVMBus() error {
	if c.ShutdownTimeout < 0 {
		return invalid("--shutdown-timeout: negative duration %v", c.ShutdownTimeout)
	}
	if c.HeartbeatTimeout != 0 {
		if !c.VMBus {
			return invalid("--heartbeat-timeout needs --vmbus")
		}
		if c.HeartbeatTimeout < minHeartbeatTimeout {
			return invalid("--heartbeat-timeout: %v is less than %v (vmm asks for a heartbeat every %v)",
				c.HeartbeatTimeout, minHeartbeatTimeout, heartbeatEvery)
		}
	}
	if len(c.KVP) > 0 && !c.VMBus {
		return invalid("--kvp needs --vmbus")
	}
	if len(c.KVP) > maxKVPKeys {
		return invalid("--kvp: %d keys, at most %d", len(c.KVP), maxKVPKeys)
	}
	for _, kv := range c.KVP {
		if err := ic.CheckKV(kv); err != nil {
			return invalid("--kvp %q: %v", kv.Key, err)
		}
	}
	return nil
}

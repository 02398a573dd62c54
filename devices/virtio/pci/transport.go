// Package pci is the virtio 1.x PCI transport (virtio 1.2 §4.1): it presents a
// virtio.Device as a modern, non-transitional PCI function with the common,
// notify, ISR and device configuration structures in one memory BAR, MSI-X
// vectors for the queues and configuration changes, and queue notifications
// that arrive either as MMIO writes or, when the machine provides them,
// through ioeventfds that never leave the kernel.
package pci

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/vmmdev/vmm/devices/pci"
	"github.com/vmmdev/vmm/devices/virtio"
	"github.com/vmmdev/vmm/devices/virtio/queue"
)

// Device status bits (virtio 1.2 §2.1).
const (
	StatusAcknowledge = 1
	StatusDriver      = 2
	StatusDriverOK    = 4
	StatusFeaturesOK  = 8
	StatusNeedsReset  = 0x40
	StatusFailed      = 0x80
)

// NoVector is VIRTIO_MSI_NO_VECTOR.
const NoVector = 0xffff

// BAR 0 layout: one structure per page.
const (
	barSize      = 0x8000
	commonOff    = 0x0000
	commonSize   = 0x3c
	isrOff       = 0x1000
	deviceOff    = 0x2000
	deviceSize   = 0x1000
	notifyOff    = 0x3000
	notifyMult   = 4
	msixTableOff = 0x4000
	msixPBAOff   = 0x6000
	maxQueues    = 0x1000 / notifyMult
)

// Virtio PCI capability types (cfg_type).
const (
	capCommon = 1
	capNotify = 2
	capISR    = 3
	capDevice = 4
	capPCICfg = 5
)

// IOEvents lets the transport have queue notifications delivered without a
// trip through the vCPU loop: Add arranges for a guest write of length bytes
// at the MMIO address addr to call fn on a goroutine of its own, and returns
// a function that undoes it. vmm implements it with KVM_IOEVENTFD.
type IOEvents interface {
	Add(addr uint64, length int, fn func()) (remove func(), err error)
}

type queueRegs struct {
	size, max            uint16
	enabled              bool
	desc, driver, device uint64
	vector               atomic.Uint32
	ready                *queue.Queue
}

// Transport is one virtio PCI function.
type Transport struct {
	dev    virtio.Device
	mem    virtio.Memory
	fn     *pci.Function
	msix   *pci.MSIX
	events IOEvents
	log    *slog.Logger
	name   string

	mu         sync.Mutex // the common configuration state machine
	devFeatSel uint32
	drvFeatSel uint32
	drvFeat    uint64
	offered    uint64
	queueSel   uint16
	queues     []*queueRegs
	removers   []func()

	status       atomic.Uint32
	isr          atomic.Uint32
	generation   atomic.Uint32
	configVector atomic.Uint32

	// notifyMu orders notifications against activation and reset: Notify
	// and Activate/Reset never overlap.
	notifyMu sync.RWMutex
	active   bool
}

// Config assembles a transport.
type Config struct {
	Name string
	// Mem is guest memory.
	Mem virtio.Memory
	// MSI delivers MSI-X messages.
	MSI pci.MSISender
	// Events, if set, serves queue notifications through ioeventfds.
	Events IOEvents
	Log    *slog.Logger
}

// classOf is the PCI class code per device type (as QEMU presents them).
func classOf(t virtio.DeviceType) uint32 {
	switch t {
	case virtio.TypeNet:
		return 0x020000
	case virtio.TypeBlock:
		return 0x010000
	case virtio.TypeConsole:
		return 0x078000
	default:
		return 0xff0000
	}
}

// New wraps dev in a virtio PCI function; add Function() to a pci.Bus.
func New(dev virtio.Device, cfg Config) (*Transport, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sizes := dev.QueueSizes()
	if len(sizes) == 0 || len(sizes) > maxQueues {
		return nil, fmt.Errorf("virtio-pci %s: %d queues", cfg.Name, len(sizes))
	}
	t := &Transport{dev: dev, mem: cfg.Mem, events: cfg.Events, log: log, name: cfg.Name,
		offered: dev.Features() | virtio.FeatureVersion1}
	for i, s := range sizes {
		if s == 0 || s > queue.MaxSize || s&(s-1) != 0 {
			return nil, fmt.Errorf("virtio-pci %s: queue %d size %d is not a power of two", cfg.Name, i, s)
		}
		t.queues = append(t.queues, &queueRegs{max: s, size: s})
	}
	msix, err := pci.NewMSIX(len(sizes)+1, cfg.MSI)
	if err != nil {
		return nil, fmt.Errorf("virtio-pci %s: %w", cfg.Name, err)
	}
	msix.OnSendError(func(err error) { log.Warn("virtio-pci: interrupt", "device", cfg.Name, "err", err) })
	t.msix = msix
	t.resetRegs()

	capOf := func(typ byte, off, length uint32, extra ...byte) pci.Capability {
		body := []byte{byte(16 + len(extra)), typ, 0, 0, 0, 0}
		body = binary.LittleEndian.AppendUint32(body, off)
		body = binary.LittleEndian.AppendUint32(body, length)
		return pci.Capability{ID: 0x09, Body: append(body, extra...)}
	}
	caps := []pci.Capability{
		msix.Capability(0, msixTableOff, msixPBAOff),
		capOf(capCommon, commonOff, commonSize),
		capOf(capNotify, notifyOff, uint32(notifyMult*len(sizes)), binary.LittleEndian.AppendUint32(nil, notifyMult)...),
		capOf(capISR, isrOff, 1),
		capOf(capDevice, deviceOff, deviceSize),
		t.pciCfgCapability(),
	}
	typ := dev.Type()
	t.fn, err = pci.NewFunction(cfg.Name, pci.Identity{
		Vendor: 0x1af4, Device: 0x1040 + uint16(typ), SubVendor: 0x1af4, Subsystem: 0x1100,
		Revision: 1, Class: classOf(typ),
	}, []pci.BAR{{Index: 0, Kind: pci.BARMem32, Size: barSize, Dev: barDevice{t}, Moved: t.barMoved}}, caps, log)
	if err != nil {
		return nil, fmt.Errorf("virtio-pci %s: %w", cfg.Name, err)
	}
	return t, nil
}

// Function is the PCI function to add to the bus.
func (t *Transport) Function() *pci.Function { return t.fn }

// Close resets the device (stopping its goroutines) and removes ioeventfds.
func (t *Transport) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resetLocked()
	for _, r := range t.removers {
		r()
	}
	t.removers = nil
}

// Status is the device status register.
func (t *Transport) Status() uint8 { return uint8(t.status.Load()) }

func (t *Transport) resetRegs() {
	t.devFeatSel, t.drvFeatSel, t.drvFeat, t.queueSel = 0, 0, 0, 0
	for _, q := range t.queues {
		q.size, q.enabled, q.desc, q.driver, q.device, q.ready = q.max, false, 0, 0, 0, nil
		q.vector.Store(NoVector)
	}
	t.configVector.Store(NoVector)
	t.isr.Store(0)
	t.status.Store(0)
}

// resetLocked stops the device and returns every register to its initial value.
func (t *Transport) resetLocked() {
	t.notifyMu.Lock()
	if t.active {
		t.dev.Reset()
		t.active = false
	}
	t.notifyMu.Unlock()
	t.resetRegs()
}

// barMoved re-registers the notification ioeventfds where the BAR now is.
func (t *Transport) barMoved(addr uint64, mapped bool) {
	if t.events == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.removers {
		r()
	}
	t.removers = nil
	if !mapped {
		return
	}
	for i := range t.queues {
		remove, err := t.events.Add(addr+notifyOff+uint64(notifyMult*i), 2, func() { t.notify(i) })
		if err != nil {
			// Notifications still arrive as MMIO exits; only slower.
			t.log.Warn("virtio-pci: ioeventfd", "device", t.name, "queue", i, "err", err)
			continue
		}
		t.removers = append(t.removers, remove)
	}
}

func (t *Transport) notify(i int) {
	t.notifyMu.RLock()
	defer t.notifyMu.RUnlock()
	if t.active && i >= 0 && i < len(t.queues) {
		t.dev.Notify(i)
	}
}

// interrupt implements virtio.Interrupt for the active device.
type interrupt struct{ t *Transport }

func (i interrupt) Queue(q int) {
	t := i.t
	if q < 0 || q >= len(t.queues) {
		return
	}
	t.isr.Or(1)
	if v := t.queues[q].vector.Load(); v != NoVector {
		t.msix.Signal(int(v))
	}
}

func (i interrupt) Config() {
	t := i.t
	t.generation.Add(1)
	t.isr.Or(2)
	if v := t.configVector.Load(); v != NoVector {
		t.msix.Signal(int(v))
	}
}

func (i interrupt) NeedsReset(err error) {
	t := i.t
	t.log.Warn("virtio-pci: device needs reset", "device", t.name, "err", err)
	if t.status.Load()&StatusDriverOK == 0 {
		return
	}
	t.status.Or(StatusNeedsReset)
	i.Config()
}

// barDevice decodes BAR 0.
type barDevice struct{ t *Transport }

func (b barDevice) Read(off uint64, data []byte) {
	t := b.t
	switch {
	case off < commonOff+commonSize:
		t.readCommon(off, data)
	case off == isrOff:
		clear(data)
		// Reading the ISR acknowledges it.
		data[0] = byte(t.isr.Swap(0))
	case off >= deviceOff && off < deviceOff+deviceSize:
		t.dev.ReadConfig(off-deviceOff, data)
	case off >= msixTableOff && off < msixPBAOff:
		t.msix.ReadTable(off-msixTableOff, data)
	case off >= msixPBAOff && off < barSize:
		t.msix.ReadPBA(off-msixPBAOff, data)
	default:
		clear(data)
	}
}

func (b barDevice) Write(off uint64, data []byte) {
	t := b.t
	switch {
	case off < commonOff+commonSize:
		t.writeCommon(off, data)
	case off >= deviceOff && off < deviceOff+deviceSize:
		t.dev.WriteConfig(off-deviceOff, data)
	case off >= notifyOff && off < notifyOff+uint64(notifyMult*len(t.queues)):
		t.notify(int((off - notifyOff) / notifyMult))
	case off >= msixTableOff && off < msixPBAOff:
		t.msix.WriteTable(off-msixTableOff, data)
	}
}

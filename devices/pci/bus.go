package pci

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// Identity of the host bridge: Intel 440FX, the bridge SeaBIOS and OVMF
// accept, with QEMU's subsystem ids.
var hostBridgeIdentity = Identity{
	Vendor: 0x8086, Device: 0x1237, SubVendor: 0x1af4, Subsystem: 0x1100,
	Revision: 0x02, Class: 0x060000,
}

// Slots is the number of device numbers on a bus.
const Slots = 32

// Sizes of the configuration mechanisms.
const (
	// ConfigPortsSize is the span of ports 0xCF8-0xCFF.
	ConfigPortsSize = 8
	// ECAMBusSize is one bus's share of an ECAM window: 32 devices x 8
	// functions x 4 KiB.
	ECAMBusSize = 1 << 20
)

// Bus is PCI bus 0 behind the host bridge, which sits at 00:00.0. Functions
// are single-function devices at function 0 of their device number.
type Bus struct {
	mmio  Mapper
	pio   Mapper
	log   *slog.Logger
	mu    sync.RWMutex
	slots [Slots]*Function
	// more holds functions 1-7 of multi-function devices (AddFunction).
	more   [Slots][7]*Function
	config configCounter
}

// NewBus returns a bus whose memory BARs are placed on mmio and I/O BARs on
// pio (nil: none decoded), with the host bridge at device 0.
func NewBus(mmio, pio Mapper, log *slog.Logger) (*Bus, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bus{mmio: mmio, pio: pio, log: log}
	hb, err := NewFunction("host-bridge", hostBridgeIdentity, nil, nil, log)
	if err != nil {
		return nil, err
	}
	if err := b.AddAt(0, hb); err != nil {
		return nil, err
	}
	return b, nil
}

// Add puts f at the lowest free device number and returns it.
func (b *Bus) Add(f *Function) (int, error) {
	b.mu.Lock()
	slot := -1
	for i, s := range b.slots {
		if s == nil {
			slot = i
			break
		}
	}
	b.mu.Unlock()
	if slot < 0 {
		return 0, fmt.Errorf("add %s: %w", f.name, ErrBusFull)
	}
	return slot, b.AddAt(slot, f)
}

// AddAt puts f at device number slot.
func (b *Bus) AddAt(slot int, f *Function) error {
	if slot < 0 || slot >= Slots {
		return fmt.Errorf("%w: device number %d", ErrInvalid, slot)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.slots[slot] != nil {
		return fmt.Errorf("add %s at %d: %w", f.name, slot, ErrBusFull)
	}
	if err := f.attach(b.mmio, b.pio); err != nil {
		return err
	}
	b.slots[slot] = f
	return nil
}

func (b *Bus) function(busNum, dev, fn uint64) *Function {
	if busNum != 0 || fn > 7 || dev >= Slots {
		return nil
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if fn > 0 {
		return b.more[dev][fn-1]
	}
	return b.slots[dev]
}

// ReadConfig reads the configuration space of bus:dev.fn at reg; absent
// functions read as all ones, as an unanswered configuration cycle does.
func (b *Bus) ReadConfig(busNum, dev, fn, reg uint64, data []byte) {
	f := b.function(busNum, dev, fn)
	b.config.note(busNum, dev, fn, f != nil)
	if f == nil {
		for i := range data {
			data[i] = 0xff
		}
		return
	}
	f.ReadConfig(reg, data)
}

// WriteConfig writes configuration space; writes to absent functions vanish.
func (b *Bus) WriteConfig(busNum, dev, fn, reg uint64, data []byte) {
	f := b.function(busNum, dev, fn)
	b.config.note(busNum, dev, fn, f != nil)
	if f != nil {
		f.WriteConfig(reg, data)
	}
}

// ConfigPorts is configuration mechanism #1: a 32-bit address register at
// 0xCF8 and a data window at 0xCFC-0xCFF. Register it on the port bus at
// 0xCF8 with ConfigPortsSize.
type ConfigPorts struct {
	bus  *Bus
	addr atomic.Uint32
	// port1 takes one-byte accesses to 0xCF9 (the PIIX3's reset control
	// register shares the address register's dword), if set.
	port1 portDevice
}

// portDevice is a register block on the port bus (devices/bus.Device).
type portDevice interface {
	Read(off uint64, data []byte)
	Write(off uint64, data []byte)
}

// SetPort1 routes one-byte accesses at 0xCF9 to d (before the guest runs).
func (c *ConfigPorts) SetPort1(d portDevice) { c.port1 = d }

// ConfigPorts returns the bus's port-I/O configuration mechanism.
func (b *Bus) ConfigPorts() *ConfigPorts { return &ConfigPorts{bus: b} }

// Read implements bus.Device.
func (c *ConfigPorts) Read(off uint64, data []byte) {
	switch {
	case off == 1 && len(data) == 1 && c.port1 != nil:
		c.port1.Read(0, data)
	case off == 0 && len(data) == 4:
		binary.LittleEndian.PutUint32(data, c.addr.Load())
	case off >= 4 && off < 8 && off+uint64(len(data)) <= 8:
		a := c.addr.Load()
		if a&(1<<31) == 0 {
			fill(data)
			return
		}
		c.bus.ReadConfig(uint64(a>>16&0xff), uint64(a>>11&0x1f), uint64(a>>8&7), uint64(a&0xfc)+off-4, data)
	default:
		fill(data)
	}
}

// Write implements bus.Device. Only 32-bit writes set the address register,
// so Linux's byte-wide probe for mechanism #2 at 0xCFB leaves it alone.
func (c *ConfigPorts) Write(off uint64, data []byte) {
	switch {
	case off == 1 && len(data) == 1 && c.port1 != nil:
		c.port1.Write(0, data)
	case off == 0 && len(data) == 4:
		c.addr.Store(binary.LittleEndian.Uint32(data) & 0x80fffffc)
	case off >= 4 && off < 8 && off+uint64(len(data)) <= 8:
		a := c.addr.Load()
		if a&(1<<31) == 0 {
			return
		}
		c.bus.WriteConfig(uint64(a>>16&0xff), uint64(a>>11&0x1f), uint64(a>>8&7), uint64(a&0xfc)+off-4, data)
	}
}

// ECAM is the memory-mapped configuration window for bus 0 (PCIe enhanced
// configuration access): offset = dev<<15 | fn<<12 | reg.
type ECAM struct{ bus *Bus }

// ECAM returns the bus's ECAM window; register it with ECAMBusSize bytes.
func (b *Bus) ECAM() *ECAM { return &ECAM{bus: b} }

func ecamDecode(off uint64, n int) (dev, fn, reg uint64, ok bool) {
	reg = off & 0xfff
	if off >= ECAMBusSize || reg+uint64(n) > 0x1000 {
		return 0, 0, 0, false
	}
	return off >> 15 & 0x1f, off >> 12 & 7, reg, true
}

// Read implements bus.Device.
func (e *ECAM) Read(off uint64, data []byte) {
	dev, fn, reg, ok := ecamDecode(off, len(data))
	if !ok {
		fill(data)
		return
	}
	e.bus.ReadConfig(0, dev, fn, reg, data)
}

// Write implements bus.Device.
func (e *ECAM) Write(off uint64, data []byte) {
	if dev, fn, reg, ok := ecamDecode(off, len(data)); ok {
		e.bus.WriteConfig(0, dev, fn, reg, data)
	}
}

func fill(data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}

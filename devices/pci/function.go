// Package pci is a conventional PCI bus with one host bridge: configuration
// space through ports 0xCF8/0xCFC and an ECAM window, type 0 functions with
// memory BARs the guest sizes and places, capability lists, and MSI-X. It
// knows nothing about what the functions do; devices (virtio, later AHCI)
// build a Function and add it to the Bus.
//
// Configuration space is written by the guest: every offset and width is
// checked, read-only bits stay read-only, and a BAR moved on top of another
// range is left unmapped rather than trusted.
package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/vmmdev/vmm/devices/bus"
)

// ConfigSize is the configuration space of a conventional function; ECAM
// offsets above it read as zero.
const ConfigSize = 256

// Standard header offsets (PCI Local Bus 3.0 §6.1).
const (
	regVendor      = 0x00
	regCommand     = 0x04
	regStatus      = 0x06
	regRevision    = 0x08
	regCacheLine   = 0x0c
	regLatency     = 0x0d
	regHeaderType  = 0x0e
	regBAR0        = 0x10
	barIOSpace     = 0x1 // bit 0 of an I/O BAR
	regSubVendor   = 0x2c
	regCapPtr      = 0x34
	regIntLine     = 0x3c
	regIntPin      = 0x3d
	firstCapOffset = 0x40
)

// Command register bits the functions implement.
const (
	CommandIO          = 1 << 0
	CommandMemory      = 1 << 1
	CommandBusMaster   = 1 << 2
	CommandINTxDisable = 1 << 10
	statusCapList      = 1 << 4
)

// Sentinel errors of NewFunction and Bus.Add.
var (
	ErrInvalid  = errors.New("pci: invalid function description")
	ErrBusFull  = errors.New("pci: no free device number on the bus")
	ErrAttached = errors.New("pci: function already on a bus")
)

// Mapper is the MMIO bus BARs are placed on (devices/bus.Bus).
type Mapper interface {
	Register(base, size uint64, d bus.Device, name string) error
	Unregister(base uint64) error
}

// Identity is the read-only part of a function's header.
type Identity struct {
	Vendor, Device       uint16
	SubVendor, Subsystem uint16
	Revision             uint8
	// Class is the 24-bit class code: base class, subclass, programming interface.
	Class uint32
	// InterruptPin is 0 (none) or 1-4 for INTA#-INTD#.
	InterruptPin uint8
}

// BARKind is the kind of a base address register.
type BARKind int

// BAR kinds. vmm's own devices are memory-mapped; I/O BARs are for devices
// whose guests expect one (QEMU's pci-testdev).
const (
	BARMem32 BARKind = iota
	BARMem64
	// BARIO is an I/O space BAR: 16-bit port addresses (the upper half
	// of the register reads as zero), decoded while COMMAND.IO is set.
	BARIO
)

// MaxIOBAR is the largest I/O BAR (the PCI limit is 256 ports).
const MaxIOBAR = 256

// BAR describes one base address register.
type BAR struct {
	// Index is the BAR number, 0-5 (a 64-bit BAR also takes Index+1).
	Index int
	Kind  BARKind
	// Size is a power of two: for memory at least 4 KiB, so that BARs
	// never share a page; for I/O from 4 to MaxIOBAR ports.
	Size         uint64
	Prefetchable bool
	// Dev answers accesses inside the BAR, at offsets from its start.
	Dev bus.Device
	// Moved, if set, is told where the BAR is now decoded: mapped is false
	// when it no longer is (decoding off, or an unusable address).
	// It runs with the function's lock held and must not call back into it.
	Moved func(addr uint64, mapped bool)
}

// Capability is one entry of the capability list. Body is everything after
// the ID and next-pointer bytes; WriteMask (nil or as long as Body) marks the
// bits the guest may change. Written, if set, is called after every guest
// write that touches the body, with the body and the range [off, off+n) of
// it the write covered; Read, if set, before every read that touches it, so
// it can refresh the body. Both run under the function's lock and must not
// call back into the function.
type Capability struct {
	ID        byte
	Body      []byte
	WriteMask []byte
	Written   func(body []byte, off, n int)
	Read      func(body []byte, off, n int)
}

type capSlot struct {
	off, end int // the body's bytes in the configuration space
	written  func(body []byte, off, n int)
	read     func(body []byte, off, n int)
}

// overlap is the part of [off, off+n) inside the capability body, relative
// to the body.
func (c capSlot) overlap(off uint64, n int) (int, int, bool) {
	lo := max(off, uint64(c.off))
	hi := min(off+uint64(n), uint64(c.end))
	if off+uint64(n) < off || lo >= hi {
		return 0, 0, false
	}
	return int(lo) - c.off, int(hi - lo), true
}

type barSlot struct {
	BAR
	mapped bool
	at     uint64
}

// Function is one PCI function's configuration space.
type Function struct {
	name string
	log  *slog.Logger

	mu    sync.Mutex
	space [ConfigSize]byte
	wmask [ConfigSize]byte
	bars  [6]*barSlot // both halves of a 64-bit BAR point at the same slot
	caps  []capSlot
	mmio  Mapper
	pio   Mapper // nil: I/O BARs are never decoded
}

// NewFunction builds a type 0 function. bars and caps are checked: BAR sizes
// must be powers of two of at least 4 KiB, indices must not collide, and the
// capabilities must fit in the 192 bytes after the header.
func NewFunction(name string, id Identity, bars []BAR, caps []Capability, log *slog.Logger) (*Function, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Function{name: name, log: log}
	s := f.space[:]
	binary.LittleEndian.PutUint16(s[regVendor:], id.Vendor)
	binary.LittleEndian.PutUint16(s[regVendor+2:], id.Device)
	s[regRevision] = id.Revision
	s[regRevision+1] = byte(id.Class)
	s[regRevision+2] = byte(id.Class >> 8)
	s[regRevision+3] = byte(id.Class >> 16)
	binary.LittleEndian.PutUint16(s[regSubVendor:], id.SubVendor)
	binary.LittleEndian.PutUint16(s[regSubVendor+2:], id.Subsystem)
	if id.InterruptPin > 4 {
		return nil, fmt.Errorf("%w: %s: interrupt pin %d", ErrInvalid, name, id.InterruptPin)
	}
	s[regIntPin] = id.InterruptPin
	binary.LittleEndian.PutUint16(f.wmask[regCommand:], CommandIO|CommandMemory|CommandBusMaster|CommandINTxDisable)
	f.wmask[regCacheLine] = 0xff
	f.wmask[regLatency] = 0xff
	f.wmask[regIntLine] = 0xff

	for _, b := range bars {
		if err := f.addBAR(b); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	off := firstCapOffset
	prev := regCapPtr
	for _, c := range caps {
		n := 2 + len(c.Body)
		end := (off + n + 3) &^ 3
		if end > ConfigSize || (c.WriteMask != nil && len(c.WriteMask) != len(c.Body)) {
			return nil, fmt.Errorf("%w: %s: capability %#x does not fit or has a bad mask", ErrInvalid, name, c.ID)
		}
		s[prev] = byte(off)
		s[off] = c.ID
		copy(s[off+2:], c.Body)
		copy(f.wmask[off+2:], c.WriteMask)
		f.caps = append(f.caps, capSlot{off: off + 2, end: off + n, written: c.Written, read: c.Read})
		prev = off + 1
		off = end
	}
	if len(caps) > 0 {
		binary.LittleEndian.PutUint16(s[regStatus:], statusCapList)
	}
	return f, nil
}

func (f *Function) addBAR(b BAR) error {
	slots := 1
	if b.Kind == BARMem64 {
		slots = 2
	}
	if b.Index < 0 || b.Index+slots > 6 {
		return fmt.Errorf("%w: BAR %d", ErrInvalid, b.Index)
	}
	minSize, maxSize := uint64(4096), uint64(1)<<63
	switch b.Kind {
	case BARMem32:
		maxSize = 1 << 31
	case BARIO:
		minSize, maxSize = 4, MaxIOBAR
	}
	if b.Size < minSize || b.Size > maxSize || b.Size&(b.Size-1) != 0 || b.Dev == nil {
		return fmt.Errorf("%w: BAR %d size %#x", ErrInvalid, b.Index, b.Size)
	}
	for i := b.Index; i < b.Index+slots; i++ {
		if f.bars[i] != nil {
			return fmt.Errorf("%w: BAR %d used twice", ErrInvalid, i)
		}
	}
	slot := &barSlot{BAR: b}
	var low uint32 // type bits
	if b.Kind == BARMem64 {
		low |= 0x4
	}
	if b.Prefetchable {
		low |= 0x8
	}
	mask := uint32(^(b.Size - 1)) &^ 0xf
	if b.Kind == BARIO {
		low, mask = barIOSpace, uint32(^(b.Size-1))&0xfffc
	}
	reg := regBAR0 + 4*b.Index
	binary.LittleEndian.PutUint32(f.space[reg:], low)
	binary.LittleEndian.PutUint32(f.wmask[reg:], mask)
	f.bars[b.Index] = slot
	if b.Kind == BARMem64 {
		binary.LittleEndian.PutUint32(f.wmask[reg+4:], uint32(^(b.Size-1)>>32))
		f.bars[b.Index+1] = slot
	}
	return nil
}

// Name is the name the function was built with.
func (f *Function) Name() string { return f.name }

func (f *Function) attach(mmio, pio Mapper) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mmio != nil {
		return fmt.Errorf("%w: %s", ErrAttached, f.name)
	}
	f.mmio, f.pio = mmio, pio
	return nil
}

// ReadConfig reads configuration space at off; bytes beyond it read as zero.
func (f *Function) ReadConfig(off uint64, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.caps {
		if o, n, ok := c.overlap(off, len(data)); ok && c.read != nil {
			c.read(f.space[c.off:c.end], o, n)
		}
	}
	for i := range data {
		data[i] = 0
		if o := off + uint64(i); o >= off && o < ConfigSize {
			data[i] = f.space[o]
		}
	}
}

// WriteConfig writes configuration space at off, changing only writable
// bits, and then applies what the write means: BARs moved, decoding turned
// on or off, capabilities told.
func (f *Function) WriteConfig(off uint64, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	touched := false
	barsTouched := false
	for i, v := range data {
		o := off + uint64(i)
		if o < off || o >= ConfigSize {
			break
		}
		m := f.wmask[o]
		if m == 0 {
			continue
		}
		f.space[o] = f.space[o]&^m | v&m
		touched = true
		if (o >= regCommand && o < regCommand+2) || (o >= regBAR0 && o < regBAR0+24) {
			barsTouched = true
		}
	}
	if !touched {
		return
	}
	if barsTouched {
		f.remap()
	}
	for _, c := range f.caps {
		if o, n, ok := c.overlap(off, len(data)); ok && c.written != nil {
			c.written(f.space[c.off:c.end], o, n)
		}
	}
}

// barAddr is where BAR slot b currently points.
func (f *Function) barAddr(b *barSlot) uint64 {
	reg := regBAR0 + 4*b.Index
	a := uint64(binary.LittleEndian.Uint32(f.space[reg:]) &^ 0xf)
	if b.Kind == BARIO {
		a = uint64(binary.LittleEndian.Uint32(f.space[reg:]) &^ 0x3)
	}
	if b.Kind == BARMem64 {
		a |= uint64(binary.LittleEndian.Uint32(f.space[reg+4:])) << 32
	}
	return a
}

// BARAddress reports where BAR i is decoded, if it is.
func (f *Function) BARAddress(i int) (addr uint64, mapped bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i < 0 || i >= 6 || f.bars[i] == nil || f.bars[i].Index != i {
		return 0, false
	}
	return f.bars[i].at, f.bars[i].mapped
}

// Command returns the command register.
func (f *Function) Command() uint16 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return binary.LittleEndian.Uint16(f.space[regCommand:])
}

// remap brings the MMIO and port buses in line with the BARs and the
// command register. A BAR at address 0, one that wraps, or one that would
// overlap another range is not decoded: a guest sizing or shuffling BARs
// passes through such states, and a hostile one can ask for them on purpose.
func (f *Function) remap() {
	if f.mmio == nil {
		return
	}
	cmd := binary.LittleEndian.Uint16(f.space[regCommand:])
	for i, b := range f.bars {
		if b == nil || b.Index != i {
			continue
		}
		m, on := f.mmio, cmd&CommandMemory != 0
		if b.Kind == BARIO {
			m, on = f.pio, cmd&CommandIO != 0 && f.pio != nil
		}
		addr := f.barAddr(b)
		want := on && addr != 0 && addr+b.Size > addr
		if b.mapped && (!want || b.at != addr) {
			if err := m.Unregister(b.at); err != nil {
				f.log.Warn("pci: unmap BAR", "function", f.name, "bar", i, "err", err)
			}
			b.mapped = false
			if b.Moved != nil {
				b.Moved(b.at, false)
			}
		}
		if want && !b.mapped {
			name := fmt.Sprintf("%s-bar%d", f.name, i)
			if err := m.Register(addr, b.Size, b.Dev, name); err != nil {
				f.log.Debug("pci: BAR not decoded", "function", f.name, "bar", i, "addr", fmt.Sprintf("%#x", addr), "err", err)
				continue
			}
			b.mapped, b.at = true, addr
			if b.Moved != nil {
				b.Moved(addr, true)
			}
		}
	}
}

// Package fwcfg is QEMU's firmware configuration interface (fw_cfg), the
// channel through which SeaBIOS and OVMF learn about the machine: a 16-bit
// selector port, an 8-bit data port, and a DMA interface whose descriptors
// live in guest memory (QEMU docs/specs/fw_cfg.rst).
//
// Items are numbered blobs; named files get numbers from FirstFile on and
// are listed in the file directory (item FileDir). Everything the guest
// hands over (selectors, DMA descriptors, addresses, lengths) is checked: a
// bad transfer sets the descriptor's error bit, as QEMU does, and never
// touches memory outside what the Memory accepts.
package fwcfg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Port layout relative to the base (0x510 on x86).
const (
	// Size is the span of the selector, data and DMA address registers.
	Size = 12

	offSelector = 0 // 16-bit
	offData     = 1 // 8-bit
	offDMA      = 4 // 64-bit big-endian: high half at 4, low half at 8
)

// Numbered items (QEMU's FW_CFG_* keys).
const (
	Signature     uint16 = 0x00
	ID            uint16 = 0x01
	UUID          uint16 = 0x02
	RAMSize       uint16 = 0x03
	NoGraphic     uint16 = 0x04
	NBCPUs        uint16 = 0x05
	MachineID     uint16 = 0x06
	BootMenu      uint16 = 0x0e
	MaxCPUs       uint16 = 0x0f
	FileDir       uint16 = 0x19
	FirstFile     uint16 = 0x20
	writeBit      uint16 = 0x4000 // legacy "write" flag of the selector; ignored
	maxKey        uint16 = 0x3fff
	IDTraditional        = 1 << 0
	IDDMA                = 1 << 1
)

// DMA control bits (big-endian 32-bit field of the descriptor).
const (
	DMAError  = 1 << 0
	DMARead   = 1 << 1
	DMASkip   = 1 << 2
	DMASelect = 1 << 3
	DMAWrite  = 1 << 4

	// DMADescriptorSize is control, length and address.
	DMADescriptorSize = 16
	// dmaSignature is what reading the DMA address register returns: "QEMU CFG".
	dmaSignature = 0x51454d5520434647
	// FileNameSize bounds a file name, NUL included (struct FWCfgFile).
	FileNameSize = 56
	// chunk bounds one copy to or from guest memory, so a huge length never
	// becomes a huge host allocation.
	chunk = 64 << 10
)

// Errors of AddItem and AddFile.
var (
	ErrInvalid   = errors.New("fwcfg: invalid item")
	ErrDuplicate = errors.New("fwcfg: item already present")
)

// Memory is guest-physical memory as the DMA interface sees it; accesses
// outside RAM return an error (vmm.Memory satisfies it).
type Memory interface {
	ReadAt(p []byte, gpa int64) (int, error)
	WriteAt(p []byte, gpa int64) (int, error)
}

type item struct {
	data     []byte
	writable bool
}

// Device is one fw_cfg instance. Register it on the port bus at its base
// with Size bytes.
type Device struct {
	mem Memory

	mu      sync.Mutex
	items   map[uint16]*item
	files   map[string]uint16
	sel     uint16
	off     uint32
	dmaHigh uint32
}

// New returns a device with the signature and ID items; mem is what DMA
// descriptors point into.
func New(mem Memory) *Device {
	d := &Device{mem: mem, items: map[uint16]*item{}, files: map[string]uint16{}}
	d.items[Signature] = &item{data: []byte("QEMU")}
	d.items[ID] = &item{data: binary.LittleEndian.AppendUint32(nil, IDTraditional|IDDMA)}
	d.items[FileDir] = &item{data: binary.BigEndian.AppendUint32(nil, 0)}
	return d
}

// AddItem adds a numbered, read-only item.
func (d *Device) AddItem(key uint16, data []byte) error {
	if key >= FirstFile && key <= maxKey || key == FileDir || key&writeBit != 0 {
		return fmt.Errorf("%w: key %#x is reserved", ErrInvalid, key)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.items[key]; ok && key != Signature && key != ID {
		return fmt.Errorf("%w: key %#x", ErrDuplicate, key)
	}
	d.items[key] = &item{data: append([]byte(nil), data...)}
	return nil
}

// AddUint16 and AddUint32 and AddUint64 add little-endian numbered items.
func (d *Device) AddUint16(key uint16, v uint16) error {
	return d.AddItem(key, binary.LittleEndian.AppendUint16(nil, v))
}

// AddUint32 adds a little-endian 32-bit numbered item.
func (d *Device) AddUint32(key uint16, v uint32) error {
	return d.AddItem(key, binary.LittleEndian.AppendUint32(nil, v))
}

// AddUint64 adds a little-endian 64-bit numbered item.
func (d *Device) AddUint64(key uint16, v uint64) error {
	return d.AddItem(key, binary.LittleEndian.AppendUint64(nil, v))
}

// AddFile adds a named file. A writable file takes DMA writes that stay
// within its current size; every other item is read-only.
func (d *Device) AddFile(name string, data []byte, writable bool) error {
	if name == "" || len(name) >= FileNameSize {
		return fmt.Errorf("%w: file name %q must be 1 to %d bytes", ErrInvalid, name, FileNameSize-1)
	}
	if uint64(len(data)) > 1<<32-1 {
		return fmt.Errorf("%w: file %q is larger than 4 GiB", ErrInvalid, name)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.files[name]; ok {
		return fmt.Errorf("%w: file %q", ErrDuplicate, name)
	}
	key := FirstFile + uint16(len(d.files))
	if key > maxKey {
		return fmt.Errorf("%w: too many files", ErrInvalid)
	}
	d.files[name] = key
	d.items[key] = &item{data: append([]byte(nil), data...), writable: writable}
	d.items[FileDir].data = d.directory()
	return nil
}

// File returns a copy of a named file's current contents (for writable
// files, what the guest wrote).
func (d *Device) File(name string) ([]byte, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	key, ok := d.files[name]
	if !ok {
		return nil, false
	}
	return append([]byte(nil), d.items[key].data...), true
}

// directory encodes the file directory: a big-endian count, then per file
// (sorted by name, as QEMU lists them) size, select key, reserved, name.
func (d *Device) directory() []byte {
	names := make([]string, 0, len(d.files))
	for n := range d.files {
		names = append(names, n)
	}
	sort.Strings(names)
	out := binary.BigEndian.AppendUint32(nil, uint32(len(names)))
	for _, n := range names {
		key := d.files[n]
		out = binary.BigEndian.AppendUint32(out, uint32(len(d.items[key].data)))
		out = binary.BigEndian.AppendUint16(out, key)
		out = binary.BigEndian.AppendUint16(out, 0)
		name := make([]byte, FileNameSize)
		copy(name, n)
		out = append(out, name...)
	}
	return out
}

// current is the selected item, or nil when the selector names none.
func (d *Device) current() *item { return d.items[d.sel] }

func (d *Device) selectKey(key uint16) {
	d.sel, d.off = key&^writeBit, 0
}

// Read implements bus.Device.
func (d *Device) Read(off uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case off == offData:
		// Each byte advances the offset; past the end reads zero.
		it := d.current()
		for i := range data {
			data[i] = 0
			if it != nil && uint64(d.off) < uint64(len(it.data)) {
				data[i] = it.data[d.off]
				d.off++
			}
		}
	case off >= offDMA && off+uint64(len(data)) <= offDMA+8:
		var sig [8]byte
		binary.BigEndian.PutUint64(sig[:], dmaSignature)
		copy(data, sig[off-offDMA:])
	default:
		// The selector is write-only; a read of it returns nothing useful.
		for i := range data {
			data[i] = 0
		}
	}
}

// Write implements bus.Device.
func (d *Device) Write(off uint64, data []byte) {
	switch {
	case off == offSelector && len(data) == 2:
		d.mu.Lock()
		d.selectKey(binary.LittleEndian.Uint16(data))
		d.mu.Unlock()
	case off == offDMA && len(data) == 8:
		d.DMA(binary.BigEndian.Uint64(data))
	case off == offDMA && len(data) == 4:
		d.mu.Lock()
		d.dmaHigh = binary.BigEndian.Uint32(data)
		d.mu.Unlock()
	case off == offDMA+4 && len(data) == 4:
		// The low half starts the transfer; the high half is consumed.
		d.mu.Lock()
		addr := uint64(d.dmaHigh)<<32 | uint64(binary.BigEndian.Uint32(data))
		d.dmaHigh = 0
		d.mu.Unlock()
		d.DMA(addr)
	}
	// Data port writes are ignored, as in QEMU since 2.4.
}

// DMA runs the transfer whose descriptor is at desc and writes the
// resulting control word (0, or DMAError) back into the descriptor.
func (d *Device) DMA(desc uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var raw [DMADescriptorSize]byte
	if desc > 1<<63-1 {
		return
	}
	if _, err := d.mem.ReadAt(raw[:], int64(desc)); err != nil {
		// Nowhere to report to but the descriptor's first word, if it exists.
		_, _ = d.mem.WriteAt(binary.BigEndian.AppendUint32(nil, DMAError), int64(desc))
		return
	}
	control := binary.BigEndian.Uint32(raw[0:])
	length := binary.BigEndian.Uint32(raw[4:])
	addr := binary.BigEndian.Uint64(raw[8:])
	status := d.transfer(control, length, addr)
	_, _ = d.mem.WriteAt(binary.BigEndian.AppendUint32(nil, status), int64(desc))
}

// transfer carries out one descriptor and returns its final control word.
func (d *Device) transfer(control, length uint32, addr uint64) uint32 {
	if control&DMASelect != 0 {
		d.selectKey(uint16(control >> 16))
	}
	var op uint32
	switch {
	case control&DMARead != 0:
		op = DMARead
	case control&DMAWrite != 0:
		op = DMAWrite
	case control&DMASkip != 0:
		op = DMASkip
	default:
		return 0
	}
	it := d.current()
	left := uint64(length)
	for left > 0 {
		if it == nil || uint64(d.off) >= uint64(len(it.data)) {
			// Past the item: reads fill zeros, writes fail, skips end.
			switch op {
			case DMARead:
				if !zero(d.mem, addr, left) {
					return DMAError
				}
			case DMAWrite:
				return DMAError
			}
			return 0
		}
		n := min(left, uint64(len(it.data))-uint64(d.off))
		src := it.data[d.off : uint64(d.off)+n]
		switch op {
		case DMARead:
			if !copyOut(d.mem, addr, src) {
				return DMAError
			}
		case DMAWrite:
			// A write must fit the item entirely.
			if !it.writable || n != left {
				return DMAError
			}
			if !copyIn(d.mem, addr, src) {
				return DMAError
			}
		}
		d.off += uint32(n)
		addr += n
		left -= n
	}
	return 0
}

// inRange reports whether [addr, addr+n) is a valid non-wrapping int64 range.
func inRange(addr, n uint64) bool {
	return addr <= 1<<63-1 && n <= 1<<63-1-addr
}

func copyOut(mem Memory, addr uint64, src []byte) bool {
	if !inRange(addr, uint64(len(src))) {
		return false
	}
	for len(src) > 0 {
		n := min(len(src), chunk)
		if _, err := mem.WriteAt(src[:n], int64(addr)); err != nil {
			return false
		}
		src, addr = src[n:], addr+uint64(n)
	}
	return true
}

func copyIn(mem Memory, addr uint64, dst []byte) bool {
	if !inRange(addr, uint64(len(dst))) {
		return false
	}
	for len(dst) > 0 {
		n := min(len(dst), chunk)
		if _, err := mem.ReadAt(dst[:n], int64(addr)); err != nil {
			return false
		}
		dst, addr = dst[n:], addr+uint64(n)
	}
	return true
}

func zero(mem Memory, addr, n uint64) bool {
	if !inRange(addr, n) {
		return false
	}
	z := make([]byte, min(n, chunk))
	for n > 0 {
		k := min(n, uint64(len(z)))
		if _, err := mem.WriteAt(z[:k], int64(addr)); err != nil {
			return false
		}
		n, addr = n-k, addr+k
	}
	return true
}

// Package testdev has QEMU's test devices, for test suites written against
// QEMU (kvm-unit-tests): pc-testdev's register blocks (PC) and
// hyperv-testdev's control port (HyperV).
package testdev

import (
	"encoding/binary"
	"sync"
)

// pc-testdev's register blocks (QEMU hw/misc/pc-testdev.c), at the ports
// and address of layout.
const (
	// ScratchSize is each of the two windows onto the 32-bit scratch
	// register (0xe0 and 0xe8).
	ScratchSize = 4
	// FlushSize is the flush-page port (0xe4).
	FlushSize = 4
	// IRQLines is the span of the ISA IRQ line ports (0x2000-0x2017): one
	// byte per line 0-23.
	IRQLines = 24
	// MMIOSize is the RAM-like MMIO window (0xff000000).
	MMIOSize = 64 << 10
)

// PC is pc-testdev. Its blocks are safe for concurrent use.
type PC struct {
	mu      sync.Mutex
	scratch uint32
	mem     [MMIOSize]byte
	flush   func(gpa uint64)
	irq     func(line uint32, high bool)
}

// NewPC returns pc-testdev. flush makes the host drop and re-create its
// mapping of the guest page at gpa (QEMU: mprotect to none and back), so the
// guest's next access to it faults into KVM again; irq drives one ISA
// interrupt line (GSI 0-23) of the in-kernel PIC/IOAPIC. Either may be nil.
func NewPC(flush func(gpa uint64), irq func(line uint32, high bool)) *PC {
	return &PC{flush: flush, irq: irq}
}

// Scratch is the 32-bit scratch register, at both 0xe0 and 0xe8 (QEMU's
// "ioport" and "ioport-byte", one register behind both): an access of width
// n at offset o reads or writes bytes o..o+n-1 of it, little-endian; the
// other bytes keep their value. QEMU splits 0xe8's accesses into bytes,
// which gives the same result.
func (p *PC) Scratch() *Scratch { return (*Scratch)(p) }

// Scratch is PC's scratch window.
type Scratch PC

// Read implements bus.Device.
func (s *Scratch) Read(off uint64, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range data {
		data[i] = byte(s.scratch >> (8 * ((off + uint64(i)) & 3)))
	}
}

// Write implements bus.Device.
func (s *Scratch) Write(off uint64, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, b := range data {
		shift := 8 * ((off + uint64(i)) & 3)
		s.scratch = s.scratch&^(0xff<<shift) | uint32(b)<<shift
	}
}

// Flush is the flush-page port.
func (p *PC) Flush() *Flush { return (*Flush)(p) }

// Flush is PC's flush-page port: a 32-bit write of a guest-physical address
// flushes the page holding it. Reads give 0.
type Flush PC

// Read implements bus.Device.
func (*Flush) Read(_ uint64, data []byte) { clear(data) }

// Write implements bus.Device.
func (f *Flush) Write(off uint64, data []byte) {
	if off != 0 || len(data) != 4 || f.flush == nil {
		return
	}
	f.flush(uint64(binary.LittleEndian.Uint32(data)) &^ 0xfff)
}

// IRQ is the ISA IRQ line block.
func (p *PC) IRQ() *IRQ { return (*IRQ)(p) }

// IRQ is PC's IRQ line block: a write at offset n sets line n high when the
// value is not zero, low when it is. Reads give 0.
type IRQ PC

// Read implements bus.Device.
func (*IRQ) Read(_ uint64, data []byte) { clear(data) }

// Write implements bus.Device.
func (q *IRQ) Write(off uint64, data []byte) {
	if off >= IRQLines || q.irq == nil {
		return
	}
	high := false
	for _, b := range data {
		high = high || b != 0
	}
	q.irq(uint32(off), high)
}

// MMIO is the RAM-like window.
func (p *PC) MMIO() *MMIO { return (*MMIO)(p) }

// MMIO is PC's 64 KiB window that reads back what was written, through MMIO
// exits (it is not guest RAM): for tests of the emulation of instructions
// that touch MMIO.
type MMIO PC

// Read implements bus.Device.
func (m *MMIO) Read(off uint64, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(data)
	if off < MMIOSize {
		copy(data, m.mem[off:])
	}
}

// Write implements bus.Device.
func (m *MMIO) Write(off uint64, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < MMIOSize {
		copy(m.mem[off:], data)
	}
}

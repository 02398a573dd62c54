package pci

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// CapMSIX is the MSI-X capability ID.
const CapMSIX = 0x11

// MSI-X sizes (PCI Local Bus 3.0 §6.8.2).
const (
	MSIXEntrySize  = 16
	MSIXMaxVectors = 2048
	msixCtrlEnable = 1 << 15
	msixCtrlMask   = 1 << 14
	msixVecMasked  = 1
	msiAddrPrefix  = 0xfee00000 // the x86 interrupt address range
	msiAddrMask    = 0xfff00000
)

// MSISender delivers one table's messages. v is the entry the message comes
// from, so that a sender can keep state per vector (vmm binds each vector to
// a kernel route and an irqfd, and reprograms the route only when the
// message changed); the message is the entry's current address and data.
type MSISender interface {
	SendMSI(v int, addrLo, addrHi, data uint32) error
}

// MSIX is a function's MSI-X table and pending bit array. The table is
// guest-written: any address and data are accepted, but only messages that
// address the local APICs are ever sent.
type MSIX struct {
	send MSISender

	mu        sync.Mutex
	table     []byte // n entries of 16 bytes
	pending   []uint64
	enabled   bool
	fnMasked  bool
	dropped   uint64
	n         int
	sendError func(error)
}

// NewMSIX returns an MSI-X block of n vectors (1 to 2048) that delivers
// through send. Every vector starts masked, as the specification requires.
func NewMSIX(n int, send MSISender) (*MSIX, error) {
	if n < 1 || n > MSIXMaxVectors {
		return nil, fmt.Errorf("%w: %d MSI-X vectors", ErrInvalid, n)
	}
	m := &MSIX{send: send, n: n, table: make([]byte, n*MSIXEntrySize), pending: make([]uint64, (n+63)/64)}
	for i := range n {
		m.table[i*MSIXEntrySize+12] = msixVecMasked
	}
	return m, nil
}

// Vectors is the table size.
func (m *MSIX) Vectors() int { return m.n }

// OnSendError sets a function told about failed deliveries (for logging).
func (m *MSIX) OnSendError(fn func(error)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sendError = fn
}

// TableSize and PBASize are the bytes the table and the PBA take in their BAR.
func (m *MSIX) TableSize() uint64 { return uint64(m.n * MSIXEntrySize) }

// PBASize is the pending bit array's size: whole qwords.
func (m *MSIX) PBASize() uint64 { return uint64(len(m.pending) * 8) }

// Capability returns the MSI-X capability for a table at tableOff and a PBA
// at pbaOff (8-byte aligned) in BAR bar. Its enable and function-mask bits
// are the only ones the guest can write.
func (m *MSIX) Capability(bar int, tableOff, pbaOff uint32) Capability {
	body := make([]byte, 10)
	binary.LittleEndian.PutUint16(body[0:], uint16(m.n-1))
	binary.LittleEndian.PutUint32(body[2:], tableOff&^7|uint32(bar&7))
	binary.LittleEndian.PutUint32(body[6:], pbaOff&^7|uint32(bar&7))
	mask := make([]byte, 10)
	mask[1] = 0xc0
	return Capability{ID: CapMSIX, Body: body, WriteMask: mask, Written: func(b []byte, _, _ int) {
		ctrl := binary.LittleEndian.Uint16(b)
		m.setControl(ctrl&msixCtrlEnable != 0, ctrl&msixCtrlMask != 0)
	}}
}

func (m *MSIX) setControl(enabled, masked bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.enabled, m.fnMasked = enabled, masked
	m.flushLocked()
}

// Enabled reports whether the guest enabled MSI-X.
func (m *MSIX) Enabled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.enabled
}

// Reset masks every vector, clears the table, pending bits and control (a
// function-level reset).
func (m *MSIX) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.table)
	clear(m.pending)
	for i := range m.n {
		m.table[i*MSIXEntrySize+12] = msixVecMasked
	}
	m.enabled, m.fnMasked = false, false
}

// Signal raises vector v: sent now if enabled and unmasked, else remembered
// in the PBA until it is unmasked. An out-of-range vector is ignored (the
// guest chose it).
func (m *MSIX) Signal(v int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v < 0 || v >= m.n || !m.enabled {
		return
	}
	if m.fnMasked || m.vecMasked(v) {
		m.pending[v/64] |= 1 << (v % 64)
		return
	}
	m.sendLocked(v)
}

func (m *MSIX) vecMasked(v int) bool { return m.table[v*MSIXEntrySize+12]&msixVecMasked != 0 }

// sendLocked delivers vector v's message, unless its address is not an
// interrupt address (a guest that never programmed the vector).
func (m *MSIX) sendLocked(v int) {
	e := m.table[v*MSIXEntrySize:]
	lo := binary.LittleEndian.Uint32(e[0:])
	hi := binary.LittleEndian.Uint32(e[4:])
	data := binary.LittleEndian.Uint32(e[8:])
	if hi != 0 || lo&msiAddrMask != msiAddrPrefix {
		m.dropped++
		return
	}
	if err := m.send.SendMSI(v, lo, hi, data); err != nil && m.sendError != nil {
		m.sendError(fmt.Errorf("MSI-X vector %d: %w", v, err))
	}
}

// flushLocked sends every pending vector that is now unmasked.
func (m *MSIX) flushLocked() {
	if !m.enabled || m.fnMasked {
		return
	}
	for v := range m.n {
		if m.pending[v/64]&(1<<(v%64)) != 0 && !m.vecMasked(v) {
			m.pending[v/64] &^= 1 << (v % 64)
			m.sendLocked(v)
		}
	}
}

// Dropped counts vectors raised with an address outside the APIC range.
func (m *MSIX) Dropped() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dropped
}

// ReadTable reads the table at off (any width; bytes outside read as zero).
func (m *MSIX) ReadTable(off uint64, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	readBytes(m.table, off, data)
}

// WriteTable writes the table at off; only the vector control's mask bit of
// each entry's last dword is kept, the rest of that dword is reserved.
// Unmasking a vector with its pending bit set sends it.
func (m *MSIX) WriteTable(off uint64, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, v := range data {
		o := off + uint64(i)
		if o < off || o >= uint64(len(m.table)) {
			break
		}
		switch o % MSIXEntrySize {
		case 12:
			m.table[o] = v & msixVecMasked
		case 13, 14, 15:
		default:
			m.table[o] = v
		}
	}
	m.flushLocked()
}

// ReadPBA reads the pending bit array; writes to it are ignored.
func (m *MSIX) ReadPBA(off uint64, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := make([]byte, len(m.pending)*8)
	for i, p := range m.pending {
		binary.LittleEndian.PutUint64(b[i*8:], p)
	}
	readBytes(b, off, data)
}

func readBytes(src []byte, off uint64, data []byte) {
	for i := range data {
		data[i] = 0
		if o := off + uint64(i); o >= off && o < uint64(len(src)) {
			data[i] = src[o]
		}
	}
}

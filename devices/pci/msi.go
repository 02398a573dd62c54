package pci

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// CapMSI is the MSI capability ID.
const CapMSI = 0x05

// MSI message control bits (PCI Local Bus 3.0 §6.8.1.3).
const (
	msiCtrlEnable = 1 << 0
	msiCtrl64     = 1 << 7
)

// MSI is a single-vector, 64-bit capable MSI capability without per-vector
// masking: what QEMU's ICH9 AHCI offers, and the interrupt Windows' inbox
// drivers are known to take. Its one message is sent through the same
// MSISender as an MSI-X table's vector 0, so it rides the machine's MSI
// routes. The guest writes the address and data: only messages that
// address the local APICs are ever sent.
type MSI struct {
	send MSISender

	mu        sync.Mutex
	enabled   bool
	addrLo    uint32
	addrHi    uint32
	data      uint16
	dropped   uint64
	sendError func(error)
}

// NewMSI returns an MSI block that delivers through send.
func NewMSI(send MSISender) *MSI { return &MSI{send: send} }

// OnSendError sets a function told about failed deliveries (for logging).
func (m *MSI) OnSendError(fn func(error)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sendError = fn
}

// Capability returns the capability: message control (enable and the
// multiple-message enable field, which stays 0: one vector), the 64-bit
// address and the data, all guest-writable except the read-only bits of
// message control.
func (m *MSI) Capability() Capability {
	body := make([]byte, 12)
	binary.LittleEndian.PutUint16(body[0:], msiCtrl64)
	mask := []byte{msiCtrlEnable, 0, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	return Capability{ID: CapMSI, Body: body, WriteMask: mask, Written: func(b []byte, _, _ int) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.enabled = binary.LittleEndian.Uint16(b[0:])&msiCtrlEnable != 0
		m.addrLo = binary.LittleEndian.Uint32(b[2:])
		m.addrHi = binary.LittleEndian.Uint32(b[6:])
		m.data = binary.LittleEndian.Uint16(b[10:])
	}}
}

// Enabled reports whether the guest enabled MSI.
func (m *MSI) Enabled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.enabled
}

// Signal sends the message if MSI is enabled; without masking there is
// nothing to remember when it is not (the device's own status registers
// say what happened).
func (m *MSI) Signal() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.enabled {
		return
	}
	if m.addrHi != 0 || m.addrLo&msiAddrMask != msiAddrPrefix {
		m.dropped++
		return
	}
	if err := m.send.SendMSI(0, m.addrLo, m.addrHi, uint32(m.data)); err != nil && m.sendError != nil {
		m.sendError(fmt.Errorf("MSI: %w", err))
	}
}

// Reset disables MSI and forgets the message (a function-level reset).
func (m *MSI) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.enabled, m.addrLo, m.addrHi, m.data = false, 0, 0, 0
}

// Dropped counts messages not sent because their address was outside the
// APIC range.
func (m *MSI) Dropped() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dropped
}

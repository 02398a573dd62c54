// Package acpipm emulates the registers an ACPI hardware-reduced platform
// uses for power control: the FADT's sleep control and sleep status
// registers and its reset register. Through them a guest OS powers the VM
// off (S5) or resets it without any legacy PM1 block.
package acpipm

import (
	"sync"

	"github.com/vmmdev/vmm/layout"
)

// Offsets in the registration at layout.PortSleepControl.
const (
	offSleepControl = 0
	offSleepStatus  = layout.PortSleepStatus - layout.PortSleepControl
	offReset        = layout.PortReset - layout.PortSleepControl
	// Size is the length of the registration.
	Size = 3
)

const (
	slpEn       = 1 << 5
	slpTypShift = 2
	slpTypMask  = 7
	wakSts      = 0x80
)

// PM is the sleep control/status and reset register block. Its methods are
// safe for concurrent use.
type PM struct {
	poweroff, reset func()

	mu     sync.Mutex
	wakSts bool
}

// New returns the block. poweroff runs when the guest enters S5, reset when
// it writes layout.ResetValue to the reset register; both run outside the
// block's lock and either may be nil.
func New(poweroff, reset func()) *PM {
	return &PM{poweroff: poweroff, reset: reset}
}

// Read implements bus.Device. Sleep control and reset read as 0 (SLP_EN is
// write-only); sleep status shows WAK_STS.
func (p *PM) Read(off uint64, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range data {
		r := off + uint64(i)
		switch {
		case r < off || r >= Size:
			data[i] = 0xff
		case r == offSleepStatus && p.wakSts:
			data[i] = wakSts
		default:
			data[i] = 0
		}
	}
}

// Write implements bus.Device. Wider writes cover consecutive registers.
func (p *PM) Write(off uint64, data []byte) {
	var poweroff, reset bool
	p.mu.Lock()
	for i, v := range data {
		r := off + uint64(i)
		if r < off {
			continue
		}
		switch r {
		case offSleepControl:
			if v&slpEn == 0 {
				continue
			}
			if (v>>slpTypShift)&slpTypMask == layout.SleepTypeS5 {
				poweroff = true
				continue
			}
			// A sleep state we do not implement: wake at once, so an OS
			// polling WAK_STS after the request carries on instead of hanging.
			p.wakSts = true
		case offSleepStatus:
			if v&wakSts != 0 {
				p.wakSts = false // write 1 to clear
			}
		case offReset:
			reset = reset || v == layout.ResetValue
		}
	}
	p.mu.Unlock()
	if poweroff && p.poweroff != nil {
		p.poweroff()
	}
	if reset && p.reset != nil {
		p.reset()
	}
}

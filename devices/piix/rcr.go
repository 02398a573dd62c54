package piix

import "sync"

// Reset control register bits (PIIX3 RCR, port 0xCF9).
const (
	rcrSystemReset = 1 << 1 // hard reset when RCR_RESET is set
	rcrReset       = 1 << 2 // writing 1 resets
)

// ResetControl is the PIIX3's reset control register at 0xCF9, which
// shares the configuration ports' dword (pci.ConfigPorts hands it the
// byte). Writing bit 2 resets the machine: OVMF's ResetSystem writes 0x06,
// Linux's reboot=pci too.
type ResetControl struct {
	reset func()

	mu  sync.Mutex
	val byte
}

// NewResetControl returns the register; reset runs (outside its lock) when
// the guest asks for a reset.
func NewResetControl(reset func()) *ResetControl { return &ResetControl{reset: reset} }

// Read implements bus.Device: the system-reset bit reads back.
func (r *ResetControl) Read(_ uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range data {
		data[i] = r.val
	}
}

// Write implements bus.Device.
func (r *ResetControl) Write(_ uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	r.mu.Lock()
	r.val = data[0] & rcrSystemReset
	reset := data[0]&rcrReset != 0
	r.mu.Unlock()
	if reset && r.reset != nil {
		r.reset()
	}
}

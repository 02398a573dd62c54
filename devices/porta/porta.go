// Package porta is the PS/2 system control port A (0x92), which firmware
// polls for the A20 gate: A20 is always on under KVM, and bit 0 written
// resets the machine (fast reset).
package porta

// Size is the port's width in I/O space.
const Size = 1

const (
	bitReset = 1 << 0
	bitA20   = 1 << 1
)

// Port is port A.
type Port struct{ reset func() }

// New returns port A; reset is called when the guest asks for a fast reset.
func New(reset func()) *Port { return &Port{reset: reset} }

func (p *Port) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = 0
	}
	if len(data) > 0 {
		data[0] = bitA20
	}
}

func (p *Port) Write(_ uint64, data []byte) {
	if len(data) > 0 && data[0]&bitReset != 0 {
		p.reset()
	}
}

// Package debugcon is the Bochs/QEMU debug console: a write-only port
// (0x402 for SeaBIOS) whose bytes go to the host. Firmware prints its debug
// log there.
package debugcon

import "io"

// Size is the port span.
const Size = 1

// readback is what QEMU's debugcon returns on a read, so firmware can tell
// that the port exists.
const readback = 0xe9

// Con passes every byte written to out.
type Con struct{ out io.Writer }

// New returns a console writing to out.
func New(out io.Writer) *Con { return &Con{out: out} }

// Read implements bus.Device.
func (c *Con) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = readback
	}
}

// Write implements bus.Device: only the low byte of a wider write counts,
// as on the real port.
func (c *Con) Write(_ uint64, data []byte) {
	if len(data) > 0 {
		_, _ = c.out.Write(data[:1])
	}
}

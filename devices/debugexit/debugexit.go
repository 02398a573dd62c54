// Package debugexit emulates QEMU's isa-debug-exit port: a test guest ends
// the VM with a status of its choosing by writing it to one port, which works
// even for guests too small to power off through ACPI.
package debugexit

// Size is the length of the registration at layout.PortDebugExit.
const Size = 1

// Port is the debug-exit port. It holds no state, so it is safe for
// concurrent use.
type Port struct {
	exit func(value uint32)
}

// New returns a port that calls exit with the value a guest writes (the VMM
// turns value k into exit status 2k+1, as QEMU does). exit may be nil.
func New(exit func(value uint32)) *Port {
	return &Port{exit: exit}
}

// Read implements bus.Device: the port has nothing to read.
func (p *Port) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}

// Write implements bus.Device. A 1-, 2- or 4-byte write (3 is accepted too)
// at the port passes its little-endian value to exit; other writes are ignored.
func (p *Port) Write(off uint64, data []byte) {
	if off != 0 || len(data) == 0 || len(data) > 4 || p.exit == nil {
		return
	}
	var v uint32
	for i, b := range data {
		v |= uint32(b) << (8 * i)
	}
	p.exit(v)
}

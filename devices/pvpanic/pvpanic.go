// Package pvpanic emulates QEMU's pvpanic ISA port (ACPI device QEMU0001):
// Linux's pvpanic driver writes to it when the guest kernel panics, which
// lets the VMM end the VM with a crash status instead of waiting for a
// timeout.
package pvpanic

// Size is the length of the registration at layout.PortPVPanic.
const Size = 1

// Events, as bits of the byte read from and written to the port.
const (
	Panicked    = 0x01 // the guest panicked
	CrashLoaded = 0x02 // the guest panicked and is about to run its crash kernel
	supported   = Panicked | CrashLoaded
)

// Device is the pvpanic port. It holds no state, so it is safe for
// concurrent use.
type Device struct {
	panicked, crashLoaded func()
}

// New returns a port that calls panicked or crashLoaded (either may be nil)
// when the guest reports that event.
func New(panicked func(), crashLoaded func()) *Device {
	return &Device{panicked: panicked, crashLoaded: crashLoaded}
}

// Read implements bus.Device: the port reads as the set of events it supports.
func (d *Device) Read(off uint64, data []byte) {
	for i := range data {
		data[i] = 0xff
		if off == 0 && i == 0 {
			data[i] = supported
		}
	}
}

// Write implements bus.Device. As in QEMU, a panic outranks a crash-kernel
// notice when both bits are written; unsupported bits are ignored.
func (d *Device) Write(off uint64, data []byte) {
	if off != 0 || len(data) == 0 {
		return
	}
	switch v := data[0]; {
	case v&Panicked != 0:
		if d.panicked != nil {
			d.panicked()
		}
	case v&CrashLoaded != 0:
		if d.crashLoaded != nil {
			d.crashLoaded()
		}
	}
}

// Package bus routes guest port I/O and MMIO accesses to devices. A Bus is an
// ordered map of non-overlapping address ranges.
package bus

// Device answers accesses to the range it was registered for. off is the offset
// from the start of that range; data's length is the access width (1, 2, 4 or 8
// bytes for port I/O, up to 8 for MMIO). Read fills data; Write consumes it.
// A device never fails an access: like hardware, it ignores what it does not
// understand and returns all ones for registers it does not have.
type Device interface {
	Read(off uint64, data []byte)
	Write(off uint64, data []byte)
}

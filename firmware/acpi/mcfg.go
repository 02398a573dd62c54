package acpi

import (
	"encoding/binary"
	"fmt"
)

// MCFGRegion is one PCIe enhanced configuration (ECAM) window.
type MCFGRegion struct {
	Base             uint64 // address of bus StartBus's configuration space
	Segment          uint16
	StartBus, EndBus uint8
}

// MCFG is the PCI Express memory-mapped configuration table (PCI Firmware
// Specification 3.2 §4.1.2), to pass in Config.Extra once a PCIe host bridge
// exists.
func MCFG(regions ...MCFGRegion) (SDT, error) {
	b := make([]byte, 8) // reserved
	for _, r := range regions {
		if r.EndBus < r.StartBus {
			return SDT{}, fmt.Errorf("%w: MCFG bus range %d-%d", ErrInvalid, r.StartBus, r.EndBus)
		}
		b = binary.LittleEndian.AppendUint64(b, r.Base)
		b = binary.LittleEndian.AppendUint16(b, r.Segment)
		b = append(b, r.StartBus, r.EndBus, 0, 0, 0, 0)
	}
	return SDT{Signature: "MCFG", Revision: 1, Body: b}, nil
}

package pci

import (
	"encoding/binary"

	"github.com/vmmdev/vmm/devices/pci"
)

// Offsets in the body (after ID and next) of struct virtio_pci_cfg_cap.
const (
	pcBar    = 2
	pcOffset = 6
	pcLength = 10
	pcData   = 14
	pcSize   = 18
)

// pciCfgCapability is VIRTIO_PCI_CAP_PCI_CFG (virtio 1.2 §4.1.4.9): a window
// through configuration space onto BAR 0, for firmware that cannot map the
// BAR. The driver picks bar, offset and length (1, 2 or 4); reading or
// writing pci_cfg_data then accesses the BAR there. Anything else (another
// BAR, a length of 3, a range past the BAR) does nothing and reads zero.
func (t *Transport) pciCfgCapability() pci.Capability {
	body := make([]byte, pcSize)
	body[0], body[1] = 20, capPCICfg
	mask := make([]byte, pcSize)
	mask[pcBar] = 0xff
	for i := pcOffset; i < pcSize; i++ {
		mask[i] = 0xff
	}
	return pci.Capability{ID: 0x09, Body: body, WriteMask: mask,
		Written: func(b []byte, off, n int) {
			if off+n > pcData {
				if at, l, ok := pciCfgTarget(b); ok {
					barDevice{t}.Write(at, b[pcData:pcData+l])
				}
			}
		},
		Read: func(b []byte, off, n int) {
			if off+n > pcData {
				clear(b[pcData:])
				if at, l, ok := pciCfgTarget(b); ok {
					barDevice{t}.Read(at, b[pcData:pcData+l])
				}
			}
		},
	}
}

func pciCfgTarget(b []byte) (uint64, int, bool) {
	at := uint64(binary.LittleEndian.Uint32(b[pcOffset:]))
	l := binary.LittleEndian.Uint32(b[pcLength:])
	if b[pcBar] != 0 || (l != 1 && l != 2 && l != 4) || at+uint64(l) > barSize || at%uint64(l) != 0 {
		return 0, 0, false
	}
	return at, int(l), true
}

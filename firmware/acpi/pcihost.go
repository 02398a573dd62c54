package acpi

import (
	"fmt"

	"github.com/vmmdev/vmm/firmware/acpi/aml"
)

// PCIHost describes a PCI host bridge with one segment's buses below it.
type PCIHost struct {
	// ECAMBase is where bus StartBus's enhanced configuration space starts.
	ECAMBase         uint64
	StartBus, EndBus uint8
	// ConfigPort is the configuration mechanism #1 address port (0xCF8).
	ConfigPort uint16
	// MMIOBase and MMIOEnd (exclusive) bound the 32-bit memory window for BARs.
	MMIOBase, MMIOEnd uint32
}

// ecamSize is the ECAM span of the host's buses: 1 MiB per bus.
func (h PCIHost) ecamSize() uint64 { return uint64(h.EndBus-h.StartBus+1) << 20 }

// PCIHostDevices returns the DSDT devices for h, to put in Config.Devices,
// and the MCFG table, to put in Config.Extra: a PNP0A03 root bridge whose
// _CRS gives the OS the bus numbers, the configuration ports, the legacy I/O
// it forwards and the BAR window; and a PNP0C02 motherboard device that
// reserves the ECAM window, which Linux requires before it trusts the MCFG.
// There is no _PRT: the bridge's devices use MSI-X only.
func PCIHostDevices(h PCIHost) ([]aml.Term, SDT, error) {
	if h.EndBus < h.StartBus || h.MMIOEnd <= h.MMIOBase || h.ECAMBase%(1<<20) != 0 ||
		h.ECAMBase+h.ecamSize() > 1<<32 || h.ConfigPort > 0xfff8 {
		return nil, SDT{}, fmt.Errorf("%w: PCI host %+v", ErrInvalid, h)
	}
	mcfg, err := MCFG(MCFGRegion{Base: h.ECAMBase, StartBus: h.StartBus, EndBus: h.EndBus})
	if err != nil {
		return nil, SDT{}, err
	}
	port := h.ConfigPort
	pci := aml.Device("PCI0",
		aml.Name("_HID", aml.EISAID("PNP0A03")),
		aml.Name("_ADR", aml.Zero),
		aml.Name("_SEG", aml.Zero),
		aml.Name("_BBN", aml.Int(h.StartBus)),
		aml.Name("_UID", aml.Zero),
		aml.Name("_CRS", aml.ResourceTemplate(
			aml.WordBusNumber(uint16(h.StartBus), uint16(h.EndBus)),
			aml.IO(true, port, port, 1, 8),
			aml.WordIO(0, port-1),
			aml.WordIO(port+8, 0xffff),
			aml.DWordMemory(aml.MemNonCacheable, true, h.MMIOBase, h.MMIOEnd-1),
		)),
	)
	res := aml.Device("MRES",
		aml.Name("_HID", aml.EISAID("PNP0C02")),
		aml.Name("_UID", aml.One),
		aml.Name("_CRS", aml.ResourceTemplate(
			aml.Memory32Fixed(true, uint32(h.ECAMBase), uint32(h.ecamSize())),
		)),
	)
	return []aml.Term{pci, res}, mcfg, nil
}

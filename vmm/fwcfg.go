package vmm

import (
	"encoding/binary"
	"fmt"

	"github.com/vmmdev/vmm/devices/fwcfg"
	"github.com/vmmdev/vmm/firmware/acpi"
	"github.com/vmmdev/vmm/firmware/e820"
	"github.com/vmmdev/vmm/firmware/smbios"
	"github.com/vmmdev/vmm/layout"
)

// fw_cfg files every boot mode serves, beyond the numbered items.
const (
	fileE820         = "etc/e820"
	fileSMBIOSAnchor = "etc/smbios/smbios-anchor"
	fileSMBIOSTables = "etc/smbios/smbios-tables"
)

// platformFWCfg is the fw_cfg device of every boot mode: what the machine is
// (CPU counts, RAM size, the e820 map, SMBIOS) and the ACPI tables as
// table-loader files. tables are the ones the boot path uses, so what a
// guest reads through fw_cfg is what vmm wrote into memory (direct boot) or
// what the firmware installs. Boot paths add their own items after this.
func platformFWCfg(mem fwcfg.Memory, cpus int, memory uint64, tables *acpi.Tables) (*fwcfg.Device, error) {
	d := fwcfg.New(mem)
	for _, err := range []error{
		d.AddUint16(fwcfg.NBCPUs, uint16(cpus)),
		d.AddUint16(fwcfg.MaxCPUs, uint16(cpus)),
		d.AddUint64(fwcfg.RAMSize, memory),
		d.AddFile(fileE820, e820File(memory), false),
	} {
		if err != nil {
			return nil, fmt.Errorf("fw_cfg: %w", err)
		}
	}
	script, err := tables.LoaderScript()
	if err != nil {
		return nil, fmt.Errorf("ACPI table-loader script: %w", err)
	}
	for _, b := range tables.Blobs {
		if err := d.AddFile(acpi.FileName(b.Name), b.Data, false); err != nil {
			return nil, fmt.Errorf("fw_cfg ACPI: %w", err)
		}
	}
	if err := d.AddFile(acpi.LoaderFile, script, false); err != nil {
		return nil, fmt.Errorf("fw_cfg ACPI: %w", err)
	}
	var regions []smbios.Region
	for _, r := range layout.RAMRegions(memory) {
		regions = append(regions, smbios.Region{Base: r.Start, Size: r.Size})
	}
	anchor, table, err := smbios.Build(smbios.Config{CPUs: cpus, Memory: regions})
	if err != nil {
		return nil, fmt.Errorf("build SMBIOS tables: %w", err)
	}
	if err := d.AddFile(fileSMBIOSAnchor, anchor, false); err != nil {
		return nil, fmt.Errorf("fw_cfg SMBIOS: %w", err)
	}
	if err := d.AddFile(fileSMBIOSTables, table, false); err != nil {
		return nil, fmt.Errorf("fw_cfg SMBIOS: %w", err)
	}
	return d, nil
}

// registerFWCfg puts d at QEMU's fw_cfg ports.
func (m *Machine) registerFWCfg(d *fwcfg.Device) error {
	if err := m.pio.Register(layout.PortFWCfg, fwcfg.Size, d, "fw_cfg"); err != nil {
		return fmt.Errorf("register fw_cfg: %w", err)
	}
	return nil
}

// e820File encodes the memory map (the direct-boot builder's) as QEMU's
// etc/e820: packed little-endian {address u64, length u64, type u32}.
func e820File(memSize uint64) []byte {
	var out []byte
	for _, e := range e820.Map(memSize) {
		out = binary.LittleEndian.AppendUint64(out, e.Addr)
		out = binary.LittleEndian.AppendUint64(out, e.Size)
		out = binary.LittleEndian.AppendUint32(out, uint32(e.Type))
	}
	return out
}

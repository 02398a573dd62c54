package acpi

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/layout"
)

func vmmPCIHost() PCIHost {
	return PCIHost{ECAMBase: layout.PCIECAMBase, StartBus: 0, EndBus: 0, ConfigPort: layout.PortPCIConfig,
		MMIOBase: layout.PCIMMIOBase, MMIOEnd: layout.PCIMMIOEnd}
}

func TestPCIHostDevices(t *testing.T) {
	devs, mcfg, err := PCIHostDevices(vmmPCIHost())
	require.NoError(t, err)
	require.Len(t, devs, 2)
	b, err := mcfg.Bytes()
	require.NoError(t, err)
	// Reserved qword, then base 0xe0000000, segment 0, buses 0-0.
	assert.Equal(t, []byte{0, 0, 0, 0xe0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, b[headerSize+8:headerSize+24])
	for _, bad := range []PCIHost{
		{ECAMBase: 0xe0000000, StartBus: 1, EndBus: 0, MMIOBase: 1, MMIOEnd: 2},
		{ECAMBase: 0xe0000000, MMIOBase: 2, MMIOEnd: 2},
		{ECAMBase: 0xe0001000, MMIOBase: 1, MMIOEnd: 2},
		{ECAMBase: 0xfff00000, EndBus: 1, MMIOBase: 1, MMIOEnd: 2},
	} {
		_, _, err := PCIHostDevices(bad)
		assert.ErrorIs(t, err, ErrInvalid, "%+v", bad)
	}
}

// TestIASLPCIHost disassembles the DSDT with vmm's own PCI host bridge and
// checks what ACPICA decoded.
func TestIASLPCIHost(t *testing.T) {
	iasl := lookTool(t, "iasl")
	devs, mcfg, err := PCIHostDevices(vmmPCIHost())
	require.NoError(t, err)
	dir := t.TempDir()
	names := acpiFiles(t, dir, Config{CPUs: 2, Devices: devs, Extra: []SDT{mcfg}})
	require.Contains(t, names, "DSDT")
	require.Contains(t, names, "MCFG")
	for _, name := range []string{"DSDT", "MCFG"} {
		out := runTool(t, dir, iasl, "-d", name+".dat")
		assert.NotRegexp(t, dslComplaint, out)
		dsl, err := os.ReadFile(filepath.Join(dir, name+".dsl"))
		require.NoError(t, err)
		assert.NotRegexp(t, dslComplaint, string(dsl))
		if name == "DSDT" {
			s := string(dsl)
			assert.Contains(t, s, `Device (PCI0)`)
			assert.Contains(t, s, `EisaId ("PNP0A03")`)
			assert.Contains(t, s, `EisaId ("PNP0C02")`)
			assert.Contains(t, s, "0x0CF8,             // Range Minimum")
			assert.Contains(t, s, "0xC0000000,         // Range Minimum")
			assert.Contains(t, s, "0xDFFFFFFF,         // Range Maximum")
			assert.Contains(t, s, "Memory32Fixed (ReadWrite,\n                    0xE0000000,")
		} else {
			assert.Contains(t, string(dsl), "Base Address : 00000000E0000000")
			assert.Contains(t, string(dsl), "End Bus Number : 00")
		}
	}
}

package vmm

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/fwcfg"
	"github.com/vmmdev/vmm/firmware/acpi"
)

// readItem reads n bytes of item key through the selector and data ports.
func readItem(d *fwcfg.Device, key uint16, n int) []byte {
	d.Write(0, binary.LittleEndian.AppendUint16(nil, key))
	out := make([]byte, n)
	for i := range out {
		d.Read(1, out[i:i+1])
	}
	return out
}

func TestPlatformFWCfg(t *testing.T) {
	tables, err := acpi.Build(acpi.Config{CPUs: 3})
	require.NoError(t, err)
	const mem = 3 << 30
	d, err := platformFWCfg(nil, 3, mem, tables)
	require.NoError(t, err)

	require.Equal(t, "QEMU", string(readItem(d, fwcfg.Signature, 4)))
	require.Equal(t, uint16(3), binary.LittleEndian.Uint16(readItem(d, fwcfg.NBCPUs, 2)))
	require.Equal(t, uint16(3), binary.LittleEndian.Uint16(readItem(d, fwcfg.MaxCPUs, 2)))
	require.Equal(t, uint64(mem), binary.LittleEndian.Uint64(readItem(d, fwcfg.RAMSize, 8)))

	e820, ok := d.File(fileE820)
	require.True(t, ok)
	require.Equal(t, e820File(mem), e820)
	// The ACPI files are the tables the boot path was given: one source.
	for _, b := range tables.Blobs {
		got, ok := d.File(acpi.FileName(b.Name))
		require.True(t, ok, b.Name)
		require.Equal(t, b.Data, got, b.Name)
	}
	script, err := tables.LoaderScript()
	require.NoError(t, err)
	got, ok := d.File(acpi.LoaderFile)
	require.True(t, ok)
	require.Equal(t, script, got)
	for _, f := range []string{fileSMBIOSAnchor, fileSMBIOSTables} {
		b, ok := d.File(f)
		require.True(t, ok, f)
		require.NotEmpty(t, b, f)
	}
	// Firmware-only items are not part of the platform's set.
	_, ok = d.File(fileBootOrder)
	require.False(t, ok)
}

package vmm

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/storage/raw"
)

// TestKVMAHCIOnPCI: an AHCI disk and a CD-ROM beside a virtio disk: one
// controller with ICH9's IDs and class, ABAR (BAR 5) placed, an MSI
// capability, a bootorder line per port, the disk image locked until the
// machine closes.
func TestKVMAHCIOnPCI(t *testing.T) {
	kvmtest.Require(t)
	vd, sd := testImage(t, "vd.img"), testImage(t, "sd.img")
	iso := filepath.Join(t.TempDir(), "cd.iso")
	require.NoError(t, os.WriteFile(iso, make([]byte, 32*2048), 0o600))
	cfg := Config{Program: realModeProgram([]byte{0xf4}), CPUs: 1, Memory: testMemory,
		Disks: []Disk{{Path: vd}, {Path: sd, Interface: DiskAHCI, Serial: "sata1"}}, CDROMs: []string{iso}}
	m, err := New(cfg, nil)
	require.NoError(t, err)
	v, d := pciID(m, 2)
	require.Equal(t, [2]uint16{0x8086, 0x2922}, [2]uint16{v, d})
	class := make([]byte, 4)
	m.pci.bus.ReadConfig(0, 2, 0, 8, class)
	require.Equal(t, uint32(0x010601), binary.LittleEndian.Uint32(class)>>8)
	cp := make([]byte, 1)
	m.pci.bus.ReadConfig(0, 2, 0, 0x34, cp)
	capID := make([]byte, 1)
	m.pci.bus.ReadConfig(0, 2, 0, uint64(cp[0]), capID)
	require.Equal(t, byte(0x05), capID[0], "MSI capability")
	require.NotNil(t, m.pci.ahci)
	addr, mapped := m.pci.ahci.hba.Function().BARAddress(5)
	require.True(t, mapped)
	require.NotZero(t, addr)
	// The ABAR answers on the MMIO bus: CAP.NP = 5, PI = 0x3f, port 1 is ATAPI.
	reg := make([]byte, 4)
	require.True(t, m.mmio.Read(addr+0x0c, reg))
	require.Equal(t, uint32(0x3f), binary.LittleEndian.Uint32(reg))
	require.True(t, m.mmio.Read(addr+0x100+0x80+0x24, reg))
	require.Equal(t, uint32(0xeb140101), binary.LittleEndian.Uint32(reg))
	bo := string(m.bootOrder())
	require.Contains(t, bo, "/pci@i0cf8/pci8086,2922@2/drive@0/disk@0\n")
	require.Contains(t, bo, "/pci@i0cf8/pci8086,2922@2/drive@1/disk@0\n")
	require.True(t, strings.HasSuffix(bo, "\nHALT\n\x00"), "NUL-terminated for OVMF: %q", bo)

	_, err = New(cfg, nil)
	require.ErrorIs(t, err, ErrInvalidConfig, "the AHCI image is locked too")
	require.NoError(t, m.Close())
	img, err := raw.Open(raw.Options{Path: sd}, nil)
	require.NoError(t, err)
	img.Close()
}

package vmm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/vmmdev/vmm/internal/testenv"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/devices/virtio/blk"
	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/storage/raw"
)

func testImage(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, make([]byte, 1<<20), 0o600))
	return p
}

// pciID reads vendor and device ID of 00:slot.0.
func pciID(m *Machine, slot uint64) (uint16, uint16) {
	b := make([]byte, 4)
	m.pci.bus.ReadConfig(0, slot, 0, 0, b)
	return binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:])
}

func TestKVMDisksOnPCI(t *testing.T) {
	kvmtest.Require(t)
	rw, ro := testImage(t, "rw.img"), testImage(t, "ro.img")
	cfg := Config{Program: realModeProgram([]byte{0xf4}), CPUs: 1, Memory: testMemory,
		Disks: []Disk{{Path: rw, Serial: "one"}, {Path: ro, ReadOnly: true}}}
	m, err := New(cfg, nil)
	require.NoError(t, err)
	for slot := uint64(1); slot <= 2; slot++ {
		v, d := pciID(m, slot)
		require.Equal(t, [2]uint16{0x1af4, 0x1042}, [2]uint16{v, d}, "slot %d", slot)
	}
	v, _ := pciID(m, 3)
	require.Equal(t, uint16(0xffff), v, "nothing else on the bus")

	// The image is locked while the VM holds it...
	_, err = New(cfg, nil)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, "in use")
	require.NoError(t, m.Close())
	// ...and free again once it is closed.
	d, err := blk.Open(blk.Options{Path: rw}, nil)
	require.NoError(t, err)
	d.Close()
}

func TestKVMNICOnPCI(t *testing.T) {
	kvmtest.Require(t)
	m, err := New(Config{Program: realModeProgram([]byte{0xf4}), CPUs: 1, Memory: testMemory,
		NICs: []NIC{{Tap: fmt.Sprintf("vmmt%d", os.Getpid())}}}, nil)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOENT) {
		testenv.Skip(t, "no taps here: %v", err)
	}
	require.NoError(t, err)
	defer m.Close()
	v, d := pciID(m, 1)
	require.Equal(t, [2]uint16{0x1af4, 0x1041}, [2]uint16{v, d})
}

func TestKVMNVMeOnPCI(t *testing.T) {
	kvmtest.Require(t)
	vd, nv := testImage(t, "vd.img"), testImage(t, "nv.img")
	cfg := Config{Program: realModeProgram([]byte{0xf4}), CPUs: 2, Memory: testMemory,
		Disks: []Disk{{Path: vd}, {Path: nv, Interface: DiskNVMe, Serial: "nv1"}}}
	m, err := New(cfg, nil)
	require.NoError(t, err)
	v, d := pciID(m, 2)
	require.Equal(t, [2]uint16{0x1b36, 0x0010}, [2]uint16{v, d})
	class := make([]byte, 4)
	m.pci.bus.ReadConfig(0, 2, 0, 8, class)
	require.Equal(t, uint32(0x010802), binary.LittleEndian.Uint32(class)>>8)
	require.Len(t, m.pci.nvme, 1)
	require.Equal(t, 2, m.pci.nvme[0].ctrl.IOQueues())
	addr, mapped := m.pci.nvme[0].ctrl.Function().BARAddress(0)
	require.True(t, mapped)
	require.NotZero(t, addr)
	require.Contains(t, string(m.bootOrder()), "/pci@i0cf8/pci1b36,10@2/namespace@1,0\n")

	_, err = New(cfg, nil)
	require.ErrorIs(t, err, ErrInvalidConfig, "the NVMe image is locked too")
	require.NoError(t, m.Close())
	img, err := raw.Open(raw.Options{Path: nv}, nil)
	require.NoError(t, err)
	img.Close()
}

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

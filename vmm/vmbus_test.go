package vmm

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/vmbus"
	"github.com/vmmdev/vmm/devices/vmbus/ic"
	"github.com/vmmdev/vmm/firmware/acpi"
	"github.com/vmmdev/vmm/firmware/acpi/aml"
	"github.com/vmmdev/vmm/storage/block"
	"github.com/vmmdev/vmm/vmm/hyperv"
)

func TestVMBusConfig(t *testing.T) {
	base := Config{Program: &Program{}, CPUs: 1, Memory: 16 << 20, VMBus: true}
	require.ErrorContains(t, base.Validate(), "--vmbus needs --hyperv with synic")
	f, err := hyperv.ParseFeatures("vpindex,synic")
	require.NoError(t, err)
	base.HyperV = f
	require.NoError(t, base.Validate())

	m := &Machine{cfg: base}
	pci := aml.Device("PCI0")
	require.Equal(t, []aml.Term{pci, acpi.VMBusDevice()}, m.acpiDevices([]aml.Term{pci}))
	m.cfg.VMBus = false
	require.Equal(t, []aml.Term{pci}, m.acpiDevices([]aml.Term{pci}))
}

// TestAddStorvsc: the if=vmbus disks become LUNs of one controller in
// --disk order, the summary carries them, and close releases the images
// (their locks: a second open succeeds).
func TestAddStorvsc(t *testing.T) {
	dir := t.TempDir()
	var disks []Disk
	for i, name := range []string{"a.img", "b.img", "c.img"} {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, make([]byte, 4096*(i+1)), 0o600))
		iface := DiskVMBus
		if i == 1 {
			iface = DiskNVMe
		}
		disks = append(disks, Disk{Path: p, Interface: iface, ReadOnly: i == 2})
	}
	m := &Machine{cfg: Config{CPUs: 2, Disks: disks}, log: slog.New(slog.DiscardHandler)}
	v := &vmbusMachine{bus: vmbus.New(vmbus.Config{Host: nullHost{}, VPs: 2}), heartbeat: ic.NewHeartbeat(nil),
		shutdown: ic.NewShutdown(nil), timesync: ic.NewTimeSync(nil, nil)}
	kvp, err := ic.NewKVP(nil, nil)
	require.NoError(t, err)
	v.kvp = kvp
	require.NoError(t, m.addStorvsc(v))
	require.NotNil(t, v.scsi)
	s := v.summary()
	require.NotNil(t, s.Storvsc)
	require.Len(t, s.Storvsc.LUNs, 2)
	require.Equal(t, disks[0].Path, s.Storvsc.LUNs[0].Path)
	require.Equal(t, disks[2].Path, s.Storvsc.LUNs[1].Path)
	require.Len(t, v.imgs, 2)
	require.NoError(t, v.close())
	img, err := block.Open(block.Options{Path: disks[0].Path}, nil)
	require.NoError(t, err, "image still locked after close")
	img.Close()

	// No if=vmbus disk: no controller.
	m.cfg.Disks = disks[1:2]
	v2 := &vmbusMachine{}
	require.NoError(t, m.addStorvsc(v2))
	require.Nil(t, v2.scsi)
	require.NoError(t, v2.close())
}

type nullHost struct{}

func (nullHost) PostMessage(int, int, []byte) bool { return true }
func (nullHost) SignalEvent(int, int, uint32)      {}

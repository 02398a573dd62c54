package testhost

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/images/scenario"
)

func TestUEFIBootArgs(t *testing.T) {
	disk := images.OuterEFIDisk(grubdisk.EFIGrub)
	args, err := UEFIBootArgs("ovmf", grubdisk.EFIGrub, MediumVirtio, 2, 512, "420s")
	require.NoError(t, err)
	require.Equal(t, []string{"run", "--firmware", "ovmf", "--disk", disk + ",readonly",
		"--cpus", "2", "--memory", "512M", "--console", "stdio", "--timeout", "420s"}, args)
	for _, m := range []FirmwareMedium{MediumAHCI, MediumNVMe} {
		args, err := UEFIBootArgs("ovmf", grubdisk.EFIGrub, m, 1, 256, "")
		require.NoError(t, err, m)
		require.Equal(t, []string{"run", "--firmware", "ovmf", "--disk", disk + ",readonly,if=" + string(m), "--rng",
			"--cpus", "1", "--memory", "256M", "--console", "stdio"}, args, "the pci check needs a virtio function")
	}
	for _, bad := range []struct {
		medium    FirmwareMedium
		cpus, mem int
	}{{MediumCDROM, 1, 256}, {"floppy", 1, 256}, {MediumVirtio, 0, 256}, {MediumVirtio, 1, 0}} {
		_, err := UEFIBootArgs("ovmf", grubdisk.EFIGrub, bad.medium, bad.cpus, bad.mem, "")
		require.ErrorIs(t, err, scenario.ErrInvalid, "%+v", bad)
	}
}

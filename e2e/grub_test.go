package e2e

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/grubdisk"
)

func TestGrubGuestFitsGrubCfg(t *testing.T) {
	line := GrubGuest().Cmdline()
	require.Contains(t, line, "console=ttyS0")
	require.Contains(t, line, "vmm.checks=boot,cpus,acpi")
	_, err := grubdisk.GrubConfig(line)
	require.NoError(t, err, "the command line must be quotable in grub.cfg")
}

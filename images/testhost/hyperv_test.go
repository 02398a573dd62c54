package testhost

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
)

func TestWithHyperV(t *testing.T) {
	g := Guest{}
	vmm, err := g.Args(scenario.RunnerVMM)
	require.NoError(t, err)
	got, err := WithHyperV(scenario.RunnerVMM, vmm)
	require.NoError(t, err)
	require.Equal(t, append(append([]string(nil), vmm...), "--hyperv", "all"), got)
	qemu, err := g.Args(scenario.RunnerQEMU)
	require.NoError(t, err)
	got, err = WithHyperV(scenario.RunnerQEMU, qemu)
	require.NoError(t, err)
	require.Len(t, got, len(qemu))
	require.Contains(t, got, QEMUHyperVCPU)
	require.Contains(t, qemu, "host", "the input is not modified")
	_, err = WithHyperV(scenario.RunnerQEMU, []string{"-m", "64"})
	require.ErrorIs(t, err, scenario.ErrInvalid)
	_, err = WithHyperV("bochs", vmm)
	require.ErrorIs(t, err, scenario.ErrInvalid)
}

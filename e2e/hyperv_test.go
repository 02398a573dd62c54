package e2e

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/testhost"
)

func TestCompareHyperV(t *testing.T) {
	line := func(lines string) string {
		return `E2E-CON hyperv VMM-AGENT: check=hyperv result=pass detail="detected; Hyper-V lines: [` + lines + `]"`
	}
	vmm := []string{"noise", line("privilege flags low 0xae7f, high 0x30 | Host Build 10.0.14393.0-0-0 | Using IPI hypercalls")}
	qemu := []string{line("Using IPI hypercalls | privilege flags low 0xbe7f, high 0x8030 | Host Build 10.0.14393.0-0-0")}
	require.NoError(t, compareHyperV(map[string][]string{"hyperv": vmm, "hyperv-qemu": qemu}))

	qemu = []string{line("privilege flags low 0xbe7f | Host Build 10.0.14393.0-0-0")}
	err := compareHyperV(map[string][]string{"hyperv": vmm, "hyperv-qemu": qemu})
	require.ErrorContains(t, err, "Using IPI hypercalls")

	err = compareHyperV(map[string][]string{"hyperv": vmm})
	require.ErrorContains(t, err, "qemu: false")
	lines, ok := hypervLines([]string{`VMM-AGENT: check=hyperv result=pass detail="unterminated`})
	require.False(t, ok)
	require.Nil(t, lines)
}

func TestHyperVScenarios(t *testing.T) {
	list, err := hypervScenarios()
	require.NoError(t, err)
	require.Len(t, list, 3)
	require.Contains(t, list[0].Args, "all")
	require.Equal(t, 3, list[1].WantExit)
	require.Contains(t, list[2].Args, testhost.QEMUHyperVCPU)
	require.Equal(t, []string{"from hyperv: guest crash (Hyper-V crash MSRs) P0="}, consoleWants("hyperv-panic"))
}

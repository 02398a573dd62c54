package testhost

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/scenario"
)

func TestGuestVirtioDevices(t *testing.T) {
	g := Guest{RNG: true, VirtioConsole: true}
	line := g.Cmdline()
	assert.True(t, strings.HasPrefix(line, "console=hvc0 vmm.console=hvc0 "), line)
	assert.NotContains(t, line, "ttyS0")
	args, err := g.Args(scenario.RunnerVMM)
	require.NoError(t, err)
	joined := strings.Join(args, " ")
	assert.Contains(t, joined, "--console virtio")
	assert.Contains(t, joined, "--rng")

	plain, err := Guest{}.Args(scenario.RunnerVMM)
	require.NoError(t, err)
	assert.Contains(t, strings.Join(plain, " "), "--console stdio")
	assert.NotContains(t, strings.Join(plain, " "), "--rng")
	assert.Contains(t, Guest{}.Cmdline(), "console=ttyS0")
}

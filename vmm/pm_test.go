package vmm

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidateACPI(t *testing.T) {
	base := Config{Program: &Program{}, CPUs: 1, Memory: 16 << 20}
	for _, v := range []string{"", ACPIPC, ACPIReduced} {
		c := base
		c.ACPI = v
		require.NoError(t, c.Validate(), v)
	}
	c := base
	c.ACPI = "hw-reduced"
	require.ErrorIs(t, c.Validate(), ErrInvalidConfig)
	require.ErrorContains(t, c.Validate(), `--acpi: "hw-reduced" is not pc or reduced`)

	fw := filepath.Join(t.TempDir(), "bios.bin")
	require.NoError(t, os.WriteFile(fw, make([]byte, 64<<10), 0o600))
	c = Config{Firmware: fw, CPUs: 1, Memory: 16 << 20, ACPI: ACPIReduced}
	require.ErrorIs(t, c.Validate(), ErrInvalidConfig)
	require.ErrorContains(t, c.Validate(), "--acpi reduced: firmware boot")
}

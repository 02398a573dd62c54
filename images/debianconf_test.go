package images

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDropCloudModules drops modules from a cloud.cfg laid out as Debian
// 12's (cloud-init 22.4.2) and refuses a module the file does not list.
func TestDropCloudModules(t *testing.T) {
	const cfg = "apt:\n   preserve_sources_list: true\ncloud_config_modules:\n - snap\n - keyboard\n - locale\n" +
		" - set-passwords\n - grub-dpkg\n - apt-pipelining\n - apt-configure\n - ntp\n - runcmd\n" +
		"cloud_final_modules:\n - scripts-user\n - final-message\n - power-state-change\n"
	path := filepath.Join(t.TempDir(), "cloud.cfg")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o644))
	require.NoError(t, dropCloudModules(path, skippedCloudModules()))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "apt:\n   preserve_sources_list: true\ncloud_config_modules:\n - snap\n - keyboard\n"+
		" - set-passwords\n - apt-pipelining\n - ntp\n - runcmd\n"+
		"cloud_final_modules:\n - scripts-user\n - final-message\n - power-state-change\n", string(got))

	err = dropCloudModules(path, []string{"locale"})
	require.ErrorContains(t, err, "has no module locale")
	require.ErrorContains(t, dropCloudModules(filepath.Join(t.TempDir(), "none"), []string{"locale"}), "no such file")
}

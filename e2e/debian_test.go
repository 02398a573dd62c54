package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// TestDebianUserData runs the user-data's runcmd line as cloud-init would
// (sh -c), against a status.json as cloud-init 22.4 writes it after finding
// a NoCloud seed on /dev/vdb, with the console swapped for stdout: what it
// prints must match vmm's --expect and contain the scenario's Mark; with a
// status naming another datasource it must match neither.
func TestDebianUserData(t *testing.T) {
	var cfg struct {
		RunCmd     []string          `yaml:"runcmd"`
		PowerState map[string]string `yaml:"power_state"`
	}
	require.True(t, strings.HasPrefix(debianUserData, "#cloud-config\n"))
	require.NoError(t, yaml.Unmarshal([]byte(debianUserData), &cfg))
	require.Len(t, cfg.RunCmd, 1)
	require.Equal(t, "poweroff", cfg.PowerState["mode"])
	for _, s := range debianScenarios() {
		require.Equal(t, debianUserData, s.Files[debianSeedDir+"/user-data"], s.Name)
	}

	expect := regexp.MustCompile(regexp.QuoteMeta(debianExpect))
	run := func(status string) string {
		p := filepath.Join(t.TempDir(), "status.json")
		require.NoError(t, os.WriteFile(p, []byte(status), 0o644))
		line := strings.ReplaceAll(cfg.RunCmd[0], "/run/cloud-init/status.json", p)
		line = strings.ReplaceAll(line, "> /dev/ttyS0", "")
		out, err := exec.Command("sh", "-c", line).Output()
		require.NoError(t, err)
		return string(out)
	}
	got := run(`{"v1": {"datasource": "DataSourceNoCloud [seed=/dev/vdb][dsmode=net]", "stage": "modules-final"}}`)
	require.Equal(t, debianMarker+" DataSourceNoCloud [seed=/dev/vdb]\n", got)
	require.True(t, expect.MatchString(got))
	require.Contains(t, got, debianExpect)
	got = run(`{"v1": {"datasource": "DataSourceNone", "stage": "modules-final"}}`)
	require.False(t, expect.MatchString(got), got)
	require.NotContains(t, got, debianExpect)
}

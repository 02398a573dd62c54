package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/images/scenario"
)

// TestDebianUserData runs the user-data's runcmd line as cloud-init would
// (sh -c), against a status.json as cloud-init 22.4 writes it after finding
// a NoCloud seed, with the console swapped for stdout and findmnt's answer
// for the guest's root: what it prints must match the scenarios' --expect
// and contain their Mark; with a status naming another datasource it must
// match neither.
func TestDebianUserData(t *testing.T) {
	var cfg struct {
		RunCmd     []string          `yaml:"runcmd"`
		PowerState map[string]string `yaml:"power_state"`
	}
	require.True(t, strings.HasPrefix(debianUserData, "#cloud-config\n"))
	require.NoError(t, yaml.Unmarshal([]byte(debianUserData), &cfg))
	require.Len(t, cfg.RunCmd, 1)
	require.Equal(t, "poweroff", cfg.PowerState["mode"])
	const findRoot = "findmnt -no SOURCE /"
	require.Contains(t, cfg.RunCmd[0], "root=$("+findRoot+")")
	out, err := exec.Command("sh", "-c", findRoot).Output()
	require.NoError(t, err, "util-linux's findmnt, as the image has it")
	require.True(t, strings.HasPrefix(string(out), "/"), "findmnt prints the root's source: %q", out)

	seeds := map[string]bool{}
	for _, s := range debianScenarios() {
		dir := s.Args[slices.Index(s.Args, "--cloud-init")+1]
		require.Equal(t, debianUserData, s.Files[dir+"/user-data"], s.Name)
		require.NotEmpty(t, s.Files[dir+"/meta-data"], s.Name)
		require.False(t, seeds[dir], "%s shares its seed directory", s.Name)
		seeds[dir] = true
	}

	run := func(status, root string) string {
		p := filepath.Join(t.TempDir(), "status.json")
		require.NoError(t, os.WriteFile(p, []byte(status), 0o644))
		line := strings.ReplaceAll(cfg.RunCmd[0], "/run/cloud-init/status.json", p)
		line = strings.ReplaceAll(line, "> /dev/ttyS0", "")
		line = strings.ReplaceAll(line, findRoot, "echo "+root)
		out, err := exec.Command("sh", "-c", line).Output()
		require.NoError(t, err)
		return string(out)
	}
	nocloud := func(seed string) string {
		return `{"v1": {"datasource": "DataSourceNoCloud [seed=` + seed + `][dsmode=net]", "stage": "modules-final"}}`
	}
	for _, c := range []struct{ expect, mark, seed, root string }{
		{regexp.QuoteMeta(debianExpect), debianExpect, "/dev/vdb", "/dev/nvme0n1p3"},
		{regexp.QuoteMeta(debianStorvscExpect), debianStorvscExpect, "/dev/vda", debianStorvscRoot},
	} {
		expect := regexp.MustCompile(c.expect)
		got := run(nocloud(c.seed), c.root)
		require.Equal(t, debianMarker+" DataSourceNoCloud [seed="+c.seed+"] root="+c.root+"\n", got)
		require.True(t, expect.MatchString(got), got)
		require.Contains(t, got, c.mark)
		got = run(`{"v1": {"datasource": "DataSourceNone", "stage": "modules-final"}}`, c.root)
		require.False(t, expect.MatchString(got), got)
		require.NotContains(t, got, c.mark)
	}
	// debian-storvsc's root must be the SCSI disk, not another.
	got := run(nocloud("/dev/vda"), "/dev/vda3")
	require.False(t, regexp.MustCompile(regexp.QuoteMeta(debianStorvscExpect)).MatchString(got), got)
}

// TestDebianScenarios checks how each Debian scenario boots: SeaBIOS to the
// login prompt; OVMF from NVMe and the image's own kernel with its root on
// a storvsc disk at once, both to the marker; all from the shared base in
// snapshot mode.
func TestDebianScenarios(t *testing.T) {
	byName := map[string]scenario.Scenario{}
	for _, s := range debianScenarios() {
		byName[s.Name] = s
		require.True(t, usesDebianImage(s), s.Name)
		require.Contains(t, s.Args, "--expect", s.Name)
		require.NotEmpty(t, s.Mark, s.Name)
		require.Regexp(t, regexp.QuoteMeta(images.OuterDebianDisk)+",snapshot,if=", strings.Join(s.Args, " "), s.Name)
	}
	require.Len(t, byName, 3)
	login := byName[debianSeaBIOS]
	require.Equal(t, debianLogin, login.Args[slices.Index(login.Args, "--expect")+1])
	require.True(t, login.Stream, "checkDebianLogin reads the console")
	require.Empty(t, login.Concurrent)
	sv := byName[debianStorvsc]
	require.Equal(t, debianGroup, sv.Concurrent)
	require.Equal(t, debianGroup, byName[debianOVMF].Concurrent)
	args := strings.Join(sv.Args, " ")
	for _, want := range []string{"--kernel " + images.OuterDebianKernel, "--initrd " + images.OuterDebianInitrd,
		",snapshot,if=vmbus", "--hyperv all --vmbus"} {
		require.Contains(t, args, want)
	}
	cmdline := sv.Args[slices.Index(sv.Args, "--cmdline")+1]
	require.Equal(t, "root=/dev/sda3 ro console=ttyS0", cmdline)

	const kernel = "6.1.0-28-amd64"
	console := []string{"SeaBIOS (version 1.16.2-1)", grubdisk.MenuMarker, grubdisk.LinuxMarker,
		"[    0.000000] Linux version " + kernel + " (debian-kernel@lists.debian.org)",
		"Welcome to Debian GNU/Linux 12 (bookworm)!", "Debian GNU/Linux 12 vmm-debian ttyS0", "", "vmm-debian login: "}
	require.NoError(t, checkDebianLogin(console, kernel))
	require.ErrorContains(t, checkDebianLogin(console, "6.1.0-99-amd64"), "Linux version")
	swapped := slices.Clone(console)
	swapped[1], swapped[2] = swapped[2], swapped[1]
	require.ErrorContains(t, checkDebianLogin(swapped, kernel), "out of order")
	require.Error(t, checkDebianLogin(console[:len(console)-1], kernel))
}

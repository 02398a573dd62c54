package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/suite"
)

func TestRunSchema(t *testing.T) {
	s := runSchema()
	require.Equal(t, suite.Int, s["cpus"].Kind)
	require.Equal(t, suite.Bool, s["rng"].Kind)
	require.Equal(t, suite.Bool, s["seccomp"].Kind)
	require.Equal(t, suite.String, s["timeout"].Kind)
	require.Equal(t, suite.List, s["disk"].Kind)
	require.Equal(t, suite.List, s["net"].Kind)
	require.Equal(t, "/s/k", s["kernel"].Rel("/s", "k"))
	require.Equal(t, "seabios", s["firmware"].Rel("/s", "seabios"))
	require.Equal(t, "ovmf,vars=/s/v.fd,secure-boot", s["firmware"].Rel("/s", "ovmf,vars=v.fd,secure-boot"))
	require.Equal(t, "ovmf", s["firmware"].Rel("/s", "ovmf"))
	require.Equal(t, "ovmf,code=/s/c.fd,vars=/v.fd", s["firmware"].Rel("/s", "ovmf,code=c.fd,vars=/v.fd"))
	require.Equal(t, "/s/d.img,readonly,serial=x", s["disk"].Rel("/s", "d.img,readonly,serial=x"))
	require.Equal(t, "virtio:file:/s/c.txt", s["console"].Rel("/s", "virtio:file:c.txt"))
	require.Equal(t, "none", s["console"].Rel("/s", "none"))
	require.Nil(t, s["memory"].Rel)
}

// TestSuiteCheckedByVMMRun: a case that vmm run would refuse is refused
// when the suite loads, pointing at the key that set the bad value.
func TestSuiteCheckedByVMMRun(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bzImage"), []byte("x"), 0o644))
	good := "[guests.g]\nkernel = \"bzImage\"\n[axes]\ncpus = [1, 2]\nhyperv = [\"all\", \"none\"]\n"
	for _, c := range []struct {
		name, text, want string
	}{
		{"good", good, ""},
		{"memory", good + "memory = [\"64M\", \"lots\"]\n",
			`s.toml:6: axes.memory: case g/cpus=1/hyperv=all/memory=lots: vmm run: --memory: "lots" is not a size (examples: 512, 512M, 2G)`},
		{"cpus", "[guests.g]\nkernel = \"bzImage\"\n[axes]\ncpus = [1, 0]\n",
			"s.toml:4: axes.cpus: case g/cpus=0: vmm run: invalid configuration: --cpus: 0 vCPUs; need at least 1"},
		{"missing kernel", "[guests.g]\nkernel = \"nope\"\n", "s.toml:2: guests.g.kernel: case g: vmm run: invalid configuration: --kernel " +
			filepath.Join(dir, "nope") + ": no such file or directory"},
		{"no kernel", "[guests.g]\ncpus = 2\n", "s.toml:1: guests.g: case g: vmm run: invalid configuration: --kernel: no kernel given"},
		{"bad disk", "[guests.g]\nkernel = \"bzImage\"\ndisk = [\"d.img,sideways\"]\n", "s.toml:3: guests.g.disk: case g: vmm run: invalid value \"" + filepath.Join(dir, "d.img,sideways") + "\" for flag -disk"},
		{"bad duration", "[guests.g]\nkernel = \"bzImage\"\n[axes]\nmemory = [\"64M\"]\ntimeout = [\"1s\", \"1 fortnight\"]\n",
			`s.toml:5: axes.timeout: "1 fortnight" is not a duration`},
		{"flag package error", "[guests.g]\nkernel = \"bzImage\"\ncpus = 1\n[axes]\nlog-level = [\"warn\", \"loud\"]\n",
			`s.toml:5: axes.log-level: case g/log-level=loud: vmm run: --log-level: "loud" is not one of debug, info, warn, error`},
		{"bad regexp", "[guests.g]\nkernel = \"bzImage\"\nexpect = \"(\"\n", "s.toml:3: guests.g.expect: case g: vmm run: --expect: error parsing regexp"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "s.toml")
			require.NoError(t, os.WriteFile(path, []byte(c.text), 0o644))
			s, err := suite.Load(path, runSchema(), checkRunArgs)
			if c.want == "" {
				require.NoError(t, err)
				require.Len(t, s.Cases, 4)
				return
			}
			require.ErrorIs(t, err, suite.ErrInvalid)
			require.Contains(t, err.Error(), c.want)
		})
	}
}

// TestReadmeSuite: the README's example suite parses and expands as it says.
func TestReadmeSuite(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	text := string(readme)
	start := strings.Index(text, "    # agent.toml")
	require.Positive(t, start)
	end := strings.Index(text[start:], "\n\n- ")
	var lines []string
	for _, l := range strings.Split(text[start:start+end], "\n") {
		lines = append(lines, strings.TrimPrefix(l, "    "))
	}
	s, err := suite.Parse("agent.toml", []byte(strings.Join(lines, "\n")), runSchema(), nil)
	require.NoError(t, err)
	var names []string
	for _, c := range s.Cases {
		names = append(names, c.Name)
	}
	require.Contains(t, names, "debian/cpus=2/hyperv=all")
	require.Contains(t, names, "grub/cpus=1/memory=big")
	require.Contains(t, names, "ablation/hyperv=all,vpindex=off")
	require.Len(t, names, 4+4+14)
	for _, c := range s.Cases {
		if c.Name == "debian/cpus=2/hyperv=none" {
			require.Equal(t, 4, c.Exit)
			require.Contains(t, c.Args, "--timeout=30s")
		}
	}
}

// TestShippedSuites: the suites in suites/ load, their files standing in.
func TestShippedSuites(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"VMM_KERNEL", "VMM_GUEST", "VMM_GRUBDISK"} {
		p := filepath.Join(dir, strings.ToLower(v))
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o644))
		t.Setenv(v, p)
	}
	for file, n := range map[string]int{"agent.toml": 8, "hyperv-ablation.toml": 14} {
		s, err := suite.Load(filepath.Join("../../suites", file), runSchema(), checkRunArgs)
		require.NoError(t, err, file)
		require.Len(t, s.Cases, n, file)
	}
}

package suite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testSchema is a few of vmm run's flags; cmd/vmm's tests check the real one.
func testSchema() Schema {
	rel := func(dir, v string) string {
		if v == "seabios" || filepath.IsAbs(v) {
			return v
		}
		return filepath.Join(dir, v)
	}
	return Schema{
		"kernel": {Kind: String, Rel: rel}, "initrd": {Kind: String, Rel: rel}, "cmdline": {Kind: String},
		"firmware": {Kind: String, Rel: rel}, "cpus": {Kind: Int}, "memory": {Kind: String},
		"console": {Kind: String}, "timeout": {Kind: String}, "expect": {Kind: String}, "fail": {Kind: String},
		"hyperv": {Kind: String}, "rng": {Kind: Bool}, "disk": {Kind: List, Rel: rel},
		"console-log": {Kind: String}, "report": {Kind: String}, "hyperv-trace": {Kind: String}, "config": {Kind: String},
	}
}

// refuseMemory stands in for vmm run's validation: it refuses a memory size
// with a Q in it, naming the flag as vmm run does.
func refuseMemory(args []string) error {
	for _, a := range args {
		if strings.HasPrefix(a, "--memory=") && strings.Contains(a, "Q") {
			return fmt.Errorf("vmm run: --memory: %q is not a size", strings.TrimPrefix(a, "--memory="))
		}
	}
	return nil
}

const matrix = `# a suite
name = "matrix"

[defaults]
memory = "256M"
timeout = "90s"
expect = 'summary pass=[0-9]+ fail=0'

[axes]
cpus = [1, 2]
hyperv = ["all", "none"]

[guests.agent]
kernel = "build/bzImage"
initrd = "build/agent.cpio.gz"
cmdline = "console=ttyS0 panic=-1"

[guests.grub]
firmware = "seabios"
disk = ["grub.img,readonly"]
[guests.grub.axes]
hyperv = []
memory = ["128M", {label = "big", value = "1G"}]

[match."agent/cpus=2/hyperv=none"]
exit = 4
timeout = "1s"
`

func load(t *testing.T, text string) (*Suite, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.toml")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	return Load(path, testSchema(), refuseMemory)
}

func names(cases []Case) []string {
	var out []string
	for _, c := range cases {
		out = append(out, c.Name)
	}
	return out
}

func TestExpand(t *testing.T) {
	s, err := load(t, matrix)
	require.NoError(t, err)
	require.Equal(t, "matrix", s.Name)
	require.Equal(t, []string{
		"agent/cpus=1/hyperv=all", "agent/cpus=1/hyperv=none", "agent/cpus=2/hyperv=all", "agent/cpus=2/hyperv=none",
		"grub/cpus=1/memory=128M", "grub/cpus=1/memory=big", "grub/cpus=2/memory=128M", "grub/cpus=2/memory=big",
	}, names(s.Cases))
	dir := filepath.Dir(s.File)
	c := s.Cases[0]
	require.Equal(t, []string{
		"--cmdline=console=ttyS0 panic=-1", "--console=none", "--cpus=1",
		"--expect=summary pass=[0-9]+ fail=0", "--hyperv=all",
		"--initrd=" + filepath.Join(dir, "build/agent.cpio.gz"), "--kernel=" + filepath.Join(dir, "build/bzImage"),
		"--memory=256M", "--timeout=90s",
	}, c.Args)
	require.True(t, c.HyperV)
	require.Equal(t, 0, c.Exit)
	require.Equal(t, 90*time.Second, c.Timeout)
	require.Equal(t, []AxisValue{{"cpus", "1"}, {"hyperv", "all"}}, c.Axes)
	require.False(t, s.Cases[1].HyperV)

	timedOut := s.Cases[3]
	require.Equal(t, 4, timedOut.Exit)
	require.Equal(t, time.Second, timedOut.Timeout)
	require.Contains(t, timedOut.Args, "--timeout=1s")

	grub := s.Cases[5]
	require.Contains(t, grub.Args, "--memory=1G")
	require.Contains(t, grub.Args, "--disk="+filepath.Join(dir, "grub.img,readonly"))
	require.Contains(t, grub.Args, "--firmware=seabios")

	run := c.RunArgs("/out/c1")
	require.Equal(t, "run", run[0])
	require.Equal(t, []string{"--console-log=/out/c1/console.log", "--report=/out/c1/report.json",
		"--hyperv-trace=/out/c1/hyperv-trace.jsonl"}, run[len(run)-3:])
	require.NotContains(t, strings.Join(s.Cases[1].RunArgs("/x"), " "), "hyperv-trace")
}

func TestDefaults(t *testing.T) {
	s, err := load(t, "[guests.a]\nkernel = \"k\"\n")
	require.NoError(t, err)
	require.Equal(t, []string{"a"}, names(s.Cases))
	require.Equal(t, DefaultTimeout, s.Cases[0].Timeout)
	require.Contains(t, s.Cases[0].Args, "--console=none")
	require.Equal(t, "s", s.Name, "named after the file")
}

func TestAblation(t *testing.T) {
	s, err := load(t, `
[guests.agent]
kernel = "k"
[guests.agent.axes]
hyperv = ["ablate:all"]
`)
	require.NoError(t, err)
	// The baseline, then one case per switch of "all".
	require.Len(t, s.Cases, 14)
	require.Equal(t, "agent/hyperv=all", s.Cases[0].Name)
	require.Equal(t, &Ablation{Base: "all"}, s.Cases[0].Ablation)
	byOff := map[string]Case{}
	for _, c := range s.Cases[1:] {
		byOff[c.Ablation.Off] = c
		require.True(t, c.HyperV)
	}
	vp := byOff["vpindex"]
	require.Equal(t, "agent/hyperv=all,vpindex=off", vp.Name)
	require.Equal(t, []string{"synic", "tlbflush", "ipi", "stimer", "stimer-direct"}, vp.Ablation.AlsoOff)
	require.Contains(t, vp.Args, "--hyperv=relaxed,vpindex,runtime,time,frequencies,crash,reset,synic,stimer,stimer-direct,tlbflush,ipi,vapic=auto,"+
		"vpindex=off,synic=off,tlbflush=off,ipi=off,stimer=off,stimer-direct=off")
	require.Empty(t, byOff["relaxed"].Ablation.AlsoOff)

	_, err = load(t, "[guests.a]\nkernel = \"k\"\n[axes]\nhyperv = [\"ablate:none\"]\n")
	require.ErrorContains(t, err, "nothing to ablate")
}

// TestBadSuites: every bad suite is one line naming the file, the line and
// the key.
func TestBadSuites(t *testing.T) {
	cases := []struct {
		name, text string
		line       int
		key, msg   string
	}{
		{"syntax", "[guests.a]\nkernel = \"k\n", 2, "guests.a.kernel", "strings cannot contain newlines"},
		{"unknown top key", "nmae = \"x\"\n[guests.a]\nkernel = \"k\"\n", 1, "nmae", "unknown key"},
		{"unknown flag", "[guests.a]\nkernel = \"k\"\nmemroy = \"1G\"\n", 3, "guests.a.memroy", "not a vmm run flag"},
		{"owned flag", "[defaults]\nreport = \"r.json\"\n[guests.a]\nkernel = \"k\"\n", 2, "defaults.report", "set by vmm test"},
		{"wrong type", "[guests.a]\nkernel = \"k\"\ncpus = \"2\"\n", 3, "guests.a.cpus", "want an integer, got a string"},
		{"bad exit", "[guests.a]\nkernel = \"k\"\nexit = 300\n", 3, "guests.a.exit", "exit code"},
		{"refused axis value", "[guests.a]\nkernel = \"k\"\n\n[axes]\nmemory = [\"1G\", \"12Q\"]\n", 5, "axes.memory",
			`case a/memory=12Q: vmm run: --memory: "12Q" is not a size`},
		{"bad hyperv", "[guests.a]\nkernel = \"k\"\n[axes]\nhyperv = [\"all\", \"bogus\"]\n", 4, "axes.hyperv", "unknown switch"},
		{"bad ablation", "[guests.a]\nkernel = \"k\"\n[axes]\nhyperv = [\"ablate:synic\"]\n", 4, "axes.hyperv", "synic needs vpindex"},
		{"bad timeout", "[guests.a]\nkernel = \"k\"\ntimeout = \"soon\"\n", 3, "guests.a.timeout", "not a duration"},
		{"no guests", "name = \"x\"\n", 0, "guests", "no guests"},
		{"unused match", "[guests.a]\nkernel = \"k\"\n[match.\"b/*\"]\nexit = 3\n", 3, `match."b/*"`, "matches no case"},
		{"duplicate label", "[guests.a]\nkernel = \"k\"\n[axes]\ncpus = [1, {label = \"1\", value = 2}]\n", 4, "axes.cpus", "two values labelled"},
		{"axis not array", "[guests.a]\nkernel = \"k\"\n[axes]\ncpus = 2\n", 4, "axes.cpus", "want an array"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := load(t, c.text)
			require.Error(t, err)
			require.ErrorIs(t, err, ErrInvalid)
			var se *Error
			require.True(t, errors.As(err, &se))
			require.Equal(t, c.line, se.Line, "%v", err)
			require.Equal(t, c.key, se.Key, "%v", err)
			require.Contains(t, err.Error(), c.msg)
			require.NotContains(t, err.Error(), "\n", "one line")
			require.True(t, strings.HasPrefix(err.Error(), se.File), "names the file: %v", err)
		})
	}
}

func TestUnreadable(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.toml"), testSchema(), nil)
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, "missing.toml: no such file or directory")
	_, err = Load(t.TempDir(), testSchema(), nil)
	require.ErrorContains(t, err, "not a regular file")
}

func TestShards(t *testing.T) {
	var all []string
	for i := range 200 {
		all = append(all, fmt.Sprintf("guest%d/cpus=%d/hyperv=all", i%7, i))
	}
	for _, n := range []int{1, 2, 3, 5} {
		seen := map[string]int{}
		for k := 1; k <= n; k++ {
			sh := Shard{k, n}
			var in []string
			for _, name := range all {
				if sh.Has(name) {
					in = append(in, name)
					seen[name]++
				}
			}
			if n > 1 {
				require.NotEmpty(t, in, "shard %v of 200 cases", sh)
				require.Less(t, len(in), 200*2/n, "shard %v is far from even", sh)
			}
		}
		for _, name := range all {
			require.Equal(t, 1, seen[name], "%s in exactly one of %d shards", name, n)
		}
	}
	// Stable: a case's shard does not depend on the other cases or their order.
	cases := make([]Case, len(all))
	for i, n := range all {
		cases[i] = Case{Name: n}
	}
	sh := Shard{2, 3}
	before := names(sh.Select(cases))
	reversed := slices.Clone(cases)
	slices.Reverse(reversed)
	more := append(slices.Clone(reversed), Case{Name: "new/one"}, Case{Name: "new/two"})
	after := names(sh.Select(more))
	after = slices.DeleteFunc(after, func(s string) bool { return strings.HasPrefix(s, "new/") })
	slices.Sort(before)
	slices.Sort(after)
	require.Equal(t, before, after)
	// Pinned: the hash must not change between releases (shards of one
	// suite may run different vmm builds only if they agree).
	require.Equal(t, 3, Of("agent/cpus=2/hyperv=all", 4))
}

func TestParseShard(t *testing.T) {
	s, err := ParseShard("2/4")
	require.NoError(t, err)
	require.Equal(t, Shard{2, 4}, s)
	require.Equal(t, "2/4", s.String())
	for _, bad := range []string{"3/2", "0/2", "1/0", "x/2", "2", "-1/2", ""} {
		_, err := ParseShard(bad)
		require.ErrorIs(t, err, ErrShard, bad)
	}
}

func TestPathsFromEnvironment(t *testing.T) {
	t.Setenv("VMM_TEST_KERNEL", "/images/vmlinuz-6.1")
	s, err := load(t, "[guests.a]\nkernel = \"${VMM_TEST_KERNEL}\"\ninitrd = \"$VMM_TEST_KERNEL.cpio\"\nexpect = 'done$'\n")
	require.NoError(t, err)
	require.Contains(t, s.Cases[0].Args, "--kernel=/images/vmlinuz-6.1")
	require.Contains(t, s.Cases[0].Args, "--initrd=/images/vmlinuz-6.1.cpio")
	require.Contains(t, s.Cases[0].Args, "--expect=done$", "patterns are not expanded")
	_, err = load(t, "[guests.a]\nkernel = \"k\"\n[axes]\ndisk = [\"${VMM_TEST_UNSET_DISK}\"]\n")
	require.ErrorContains(t, err, "s.toml:4: axes.disk: environment variable VMM_TEST_UNSET_DISK is not set")
}

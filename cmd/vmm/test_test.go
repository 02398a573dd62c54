package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/internal/testenv"
	"github.com/vmmdev/vmm/internal/testimage"
	"github.com/vmmdev/vmm/suite/junit"
	"github.com/vmmdev/vmm/suite/result"
	"github.com/vmmdev/vmm/vmm"
)

// writeGuests writes the tiny test guests as bzImages into dir.
func writeGuests(t *testing.T, dir string, guests map[string][]byte) {
	t.Helper()
	for name, code := range guests {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), testimage.BzImage64(code), 0o644))
	}
}

// testSuite is the end-to-end suite of tiny guests: two Hyper-V sets x two
// vCPU counts of a guest that reaches its expected line, the same of one
// that panics (expected), an expected timeout, a firmware boot (SeaBIOS
// with no disk: exit 8 expected), a case that must fail, and a Hyper-V
// ablation. 15 cases.
const testSuite = `# vmm test's own end-to-end suite
name = "tiny"

[defaults]
memory = "64M"
timeout = "20s"
seccomp = true

[axes]
cpus = [1, 2]
hyperv = ["all", "none"]

[guests.ready]
kernel = "ready"
expect = '^READY$'
fail = 'FAILED'

[guests.panic]
kernel = "panic"
exit = 3

[guests.timeout]
kernel = "spin"
timeout = "300ms"
exit = 4
[guests.timeout.axes]
cpus = []
hyperv = []

[guests.seabios]
firmware = "seabios"
exit = 8
[guests.seabios.axes]
cpus = []
hyperv = []

[guests.broken]
kernel = "ready"
expect = 'never printed'
fail = 'READY'
[guests.broken.axes]
cpus = []
hyperv = []

[guests.ablation]
kernel = "hv-ready"
expect = '^READY$'
[guests.ablation.axes]
cpus = []
hyperv = ["ablate:relaxed,vpindex,synic"]

[match."panic/cpus=2/*"]
timeout = "30s"
`

func suiteDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeGuests(t, dir, map[string][]byte{
		"ready": guestPrintThenSpin("booting\nclocksource: Switched to clocksource tsc\nREADY\n"),
		"panic": guestPrintThenSpin("Kernel panic - not syncing: test\n"),
		"spin":  guestSpin(),
		// Writes HV_X64_MSR_GUEST_OS_ID (Hyper-V's base interface, on in
		// every case of an ablation), then reaches its line.
		"hv-ready": newAsm().emit(0xb9).emit(le32(0x40000000)...).emit(0x31, 0xd2).emit(0xb8).emit(le32(1)...).emit(0x0f, 0x30).
			print("READY\n").emit(0xeb, 0xfe).bytes(),
	})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "suite.toml"), []byte(testSuite), 0o644))
	return dir
}

type testRun struct {
	code           int
	stdout, stderr string
}

func vmmTest(t *testing.T, dir string, args ...string) testRun {
	t.Helper()
	cmd := vmmCommand(append([]string{"test"}, args...)...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		_, isExit := err.(*exec.ExitError)
		require.True(t, isExit, "%v", err)
	}
	return testRun{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
}

func verdicts(r result.Run) map[string]result.Verdict {
	out := map[string]result.Verdict{}
	for _, c := range r.Cases {
		out[c.Name] = c.Verdict
	}
	return out
}

// TestKVMSuite runs the suite with --jobs 2, then as two shards merged: the
// same verdicts; the case that must fail fails and makes the exit code 9.
func TestKVMSuite(t *testing.T) {
	kvmtest.Require(t)
	if _, err := os.Stat(vmm.SeaBIOSPath); err != nil {
		testenv.Skip(t, "Debian's seabios package is not installed: scripts/setup.sh installs it")
	}
	dir := suiteDir(t)
	full := vmmTest(t, dir, "suite.toml", "--jobs", "2", "--out", "all", "--junit", "all.xml", "--html", "all.html", "--json", "all.json")
	t.Logf("stdout:\n%s", full.stdout)
	require.Equal(t, exitCasesFailed, full.code, "stderr: %s", full.stderr)
	run, err := result.ReadJSON(filepath.Join(dir, "all.json"))
	require.NoError(t, err)
	require.Len(t, run.Cases, 15)
	require.Equal(t, 15, run.SuiteCases)
	require.Equal(t, 2, run.Jobs)
	want := map[string]result.Verdict{}
	for _, c := range run.Cases {
		want[c.Name] = result.Pass
	}
	want["broken"] = result.Fail
	require.Equal(t, want, verdicts(run))

	byName := map[string]result.Case{}
	for _, c := range run.Cases {
		byName[c.Name] = c
		require.FileExists(t, filepath.Join(c.Dir, "console.log"), c.Name)
		require.FileExists(t, filepath.Join(c.Dir, "report.json"), c.Name)
		require.Equal(t, strings.Contains(c.Name, "hyperv=all") || c.Ablation != nil,
			fileExists(filepath.Join(c.Dir, "hyperv-trace.jsonl")), "%s: the Hyper-V trace exactly where Hyper-V is on", c.Name)
	}
	ready := byName["ready/cpus=2/hyperv=all"]
	require.Equal(t, "expect-matched", ready.StopReason)
	require.NotNil(t, ready.MatchMS)
	require.Equal(t, "tsc", ready.Clocksource)
	require.NotNil(t, ready.HyperV, "the report's Hyper-V summary")
	require.Equal(t, "panic", byName["panic/cpus=1/hyperv=none"].StopReason)
	require.Equal(t, "timeout", byName["timeout"].StopReason)
	require.Equal(t, "no-boot", byName["seabios"].StopReason)
	broken := byName["broken"]
	require.Equal(t, "exit 6, expected 0 (fail-matched: READY)", broken.Detail)
	require.Contains(t, broken.ConsoleTail, "READY")
	require.Equal(t, "relaxed,vpindex,synic", byName["ablation/hyperv=relaxed,vpindex,synic"].Ablation.Base)
	vpOff := byName["ablation/hyperv=relaxed,vpindex,synic,vpindex=off"]
	require.Equal(t, []string{"synic"}, vpOff.Ablation.AlsoOff)
	require.Equal(t, &result.HyperVUse{Features: "relaxed", MSRs: []string{"GUEST_OS_ID"}, Hypercalls: []string{}}, vpOff.HyperV,
		"from the report's Hyper-V summary")
	require.Contains(t, full.stdout, "FAIL  [")
	require.Contains(t, full.stdout, "15 cases: 14 passed, 1 failed, 0 errors")

	// The JUnit file, read back.
	data, err := os.ReadFile(filepath.Join(dir, "all.xml"))
	require.NoError(t, err)
	var doc junit.TestSuites
	require.NoError(t, xml.Unmarshal(data, &doc))
	require.Equal(t, 15, doc.Tests)
	require.Equal(t, 1, doc.Failures)
	require.Len(t, doc.Suites[0].Cases, 15)
	for _, tc := range doc.Suites[0].Cases {
		if tc.Name == "broken" {
			require.NotNil(t, tc.Failure)
			require.Contains(t, tc.Failure.Text, "READY")
		} else {
			require.Nil(t, tc.Failure, tc.Name)
		}
	}
	page, err := os.ReadFile(filepath.Join(dir, "all.html"))
	require.NoError(t, err)
	require.Contains(t, string(page), `<table class="ablation" id="ablation-0">`)
	require.Equal(t, 4, strings.Count(string(page), "<td>GUEST_OS_ID</td>"), "the MSR used, in each ablation row")
	require.Equal(t, 15+4, strings.Count(string(page), "<tr class=\"pass\" data-case=")+strings.Count(string(page), "<tr class=\"fail\" data-case="),
		"15 rows of cases and 4 of the ablation")

	// Two shards, then merged: the same verdicts.
	var shards []string
	total := 0
	for k := 1; k <= 2; k++ {
		out := fmt.Sprintf("shard%d", k)
		r := vmmTest(t, dir, "suite.toml", "--jobs", "2", "--shard", fmt.Sprintf("%d/2", k), "--out", out)
		require.Contains(t, []int{0, exitCasesFailed}, r.code, "stderr: %s", r.stderr)
		sr, err := result.ReadJSON(filepath.Join(dir, out, "results.json"))
		require.NoError(t, err)
		total += len(sr.Cases)
		require.NotEmpty(t, sr.Cases, "shard %d of 15 cases", k)
		shards = append(shards, out)
	}
	require.Equal(t, 15, total)
	m := vmmTest(t, dir, append([]string{"merge", "--json", "merged.json", "--junit", "merged.xml", "--html", "merged.html"}, shards...)...)
	require.Equal(t, exitCasesFailed, m.code, "stderr: %s", m.stderr)
	merged, err := result.ReadJSON(filepath.Join(dir, "merged.json"))
	require.NoError(t, err)
	require.Equal(t, verdicts(run), verdicts(merged))
	require.Equal(t, []string{"1/2", "2/2"}, merged.Shards)
	require.FileExists(t, filepath.Join(dir, "merged.xml"))
	require.FileExists(t, filepath.Join(dir, "merged.html"))

	// One shard alone is not the whole suite.
	one := vmmTest(t, dir, "merge", shards[0])
	require.Equal(t, vmm.ExitError, one.code)
	require.Contains(t, one.stderr, "incomplete results")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestKVMSuiteInterrupt: SIGINT stops the running cases (their reports say
// interrupted), skips the rest, writes the results and exits 130.
func TestKVMSuiteInterrupt(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	writeGuests(t, dir, map[string][]byte{"up": guestPrintThenSpin("UP\n")})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "s.toml"), []byte(`
[defaults]
memory = "64M"
timeout = "60s"
[guests.up]
kernel = "up"
[axes]
cpus = [1, 2, 3, 4]
`), 0o644))
	cmd := vmmCommand("test", "s.toml", "--jobs", "2", "--out", "out")
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	// Wait for two guests to be up.
	deadline := time.Now().Add(30 * time.Second)
	for {
		logs, _ := filepath.Glob(filepath.Join(dir, "out", "up", "*", "console.log"))
		up := 0
		for _, l := range logs {
			if data, _ := os.ReadFile(l); string(data) == "UP\n" {
				up++
			}
		}
		if up == 2 {
			break
		}
		require.True(t, time.Now().Before(deadline), "two cases never came up: %s", stderr.String())
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	_ = cmd.Wait()
	require.Equal(t, vmm.ExitInterrupted, cmd.ProcessState.ExitCode(), "stdout: %s\nstderr: %s", stdout.String(), stderr.String())
	run, err := result.ReadJSON(filepath.Join(dir, "out", "results.json"))
	require.NoError(t, err)
	require.True(t, run.Interrupted)
	counts := run.Counts()
	require.Equal(t, result.Counts{result.Interrupted: 2, result.Skipped: 2}, counts)
	for _, c := range run.Cases {
		if c.Verdict == result.Interrupted {
			require.Equal(t, "interrupted", c.StopReason, "%s: vmm run stopped the guest and wrote its report", c.Name)
			require.Equal(t, vmm.ExitInterrupted, *c.Exit)
		}
	}
}

// TestSuiteBadInput: a bad suite or flag is one line on stderr, exit 2,
// and nothing started.
func TestSuiteBadInput(t *testing.T) {
	dir := t.TempDir()
	writeGuests(t, dir, map[string][]byte{"k": guestSpin()})
	write := func(name, text string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
	}
	write("good.toml", "[guests.g]\nkernel = \"k\"\n")
	write("unknown.toml", "[guests.g]\nkernel = \"k\"\nkernal = \"k\"\n")
	write("refused.toml", "[guests.g]\nkernel = \"k\"\n[axes]\nhyperv = [\"all\", \"stimer\"]\n")
	write("unreadable.toml", "[guests.g]\nkernel = \"k\"\ninitrd = \"missing.cpio\"\n")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "noperm.toml"), []byte("[guests.g]\nkernel = \"k\"\n"), 0o000))
	// Unreadable even for root (CI runs as root): directories where files
	// belong.
	write("dirkernel.toml", "[guests.g]\nkernel = \"adir\"\n")
	require.NoError(t, os.Mkdir(filepath.Join(dir, "adir"), 0o755))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "dir.toml"), 0o755))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"unknown.toml"}, "vmm test: unknown.toml:3: guests.g.kernal: unknown key: not a vmm run flag"},
		{[]string{"refused.toml"}, "vmm test: refused.toml:4: axes.hyperv: hyperv: invalid feature list: stimer needs synic"},
		{[]string{"unreadable.toml"}, "vmm test: unreadable.toml:3: guests.g.initrd: case g: vmm run: invalid configuration: --initrd " + filepath.Join(dir, "missing.cpio") + ": no such file or directory"},
		{[]string{"missing.toml"}, "vmm test: missing.toml: no such file or directory"},
		{[]string{"dirkernel.toml"}, "vmm test: dirkernel.toml:2: guests.g.kernel: case g: vmm run: invalid configuration: --kernel " + filepath.Join(dir, "adir") + ": not a regular file"},
		{[]string{"dir.toml"}, "vmm test: dir.toml: not a regular file"},
		{[]string{"good.toml", "--shard", "3/2"}, `vmm test: --shard: bad shard "3/2": need 1 <= K <= N`},
		{[]string{"good.toml", "--jobs", "-1"}, "vmm test: --jobs -1"},
		{[]string{"good.toml", "--bogus"}, "vmm test: flag provided but not defined: -bogus"},
		{[]string{}, "vmm test: want one suite file"},
	} {
		r := vmmTest(t, dir, append(c.args, "--out", "out")...)
		require.Equal(t, vmm.ExitUsage, r.code, "%v: %s", c.args, r.stderr)
		require.True(t, strings.HasPrefix(r.stderr, c.want), "%v: got %q", c.args, r.stderr)
		require.Equal(t, 1, strings.Count(r.stderr, "\n"), "%v: one line: %q", c.args, r.stderr)
		require.NoDirExists(t, filepath.Join(dir, "out"), "nothing started")
	}
	if os.Geteuid() != 0 {
		r := vmmTest(t, dir, "noperm.toml")
		require.Equal(t, vmm.ExitUsage, r.code)
		require.Contains(t, r.stderr, "noperm.toml: permission denied")
	}
	r := vmmTest(t, dir, "good.toml", "--list", "--shard", "1/1")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "g\n", r.stdout)
}

// TestMergeErrors: results of different suites or a shard twice do not merge.
func TestMergeErrors(t *testing.T) {
	dir := t.TempDir()
	a := result.Run{Version: result.Version, Suite: "a", SuiteCases: 1, Shards: []string{"1/1"},
		Cases: []result.Case{{Name: "x", Verdict: result.Pass}}}
	b := a
	b.Suite = "b"
	for name, r := range map[string]result.Run{"a.json": a, "b.json": b} {
		require.NoError(t, result.WriteJSON(filepath.Join(dir, name), r))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"version": 99}`), 0o644))
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"merge", "a.json"}, 0, ""},
		{[]string{"merge", "a.json", "b.json"}, vmm.ExitError, "results of different suites"},
		{[]string{"merge", "a.json", "a.json"}, vmm.ExitError, "duplicate shard 1/1"},
		{[]string{"merge", "bad.json"}, vmm.ExitError, "not a vmm test result file: version 99"},
		{[]string{"merge"}, vmm.ExitUsage, "name the shards"},
	} {
		r := vmmTest(t, dir, c.args...)
		require.Equal(t, c.code, r.code, "%v: %s", c.args, r.stderr)
		require.Contains(t, r.stderr, c.want)
	}
	var doc map[string]any
	data, err := os.ReadFile(filepath.Join(dir, "a.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &doc))
	require.EqualValues(t, result.Version, doc["version"])
}

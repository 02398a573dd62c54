package agentsuite

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/testhost"
	"github.com/vmmdev/vmm/internal/chromiumtest"
	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/internal/testenv"
	"github.com/vmmdev/vmm/suite"
	"github.com/vmmdev/vmm/suite/htmlreport"
	"github.com/vmmdev/vmm/suite/result"
	"github.com/vmmdev/vmm/vmm"
)

// exitCasesFailed is vmm test's exit code when a case did not meet its
// expectation (cmd/vmm's testUsage).
const exitCasesFailed = 9

// host is what the shipped suites need: bin/vmm and the images in the
// environment variables the suites name.
type host struct {
	root, vmm string
	env       []string
}

// prepare finds bin/vmm and make images' kernel, agent initramfs and GRUB
// disk, or skips (fails under CI=true, where make unit has built them).
func prepare(t *testing.T) host {
	t.Helper()
	kvmtest.Require(t)
	if !vmm.Probe(kvmtest.Path).CanBootLinux {
		testenv.Skip(t, "this host's KVM cannot boot Linux: go test -exec <module root>/bin/kvmexec runs this test in the nested test host")
	}
	root, err := images.ModuleRoot()
	require.NoError(t, err)
	h := host{root: root, vmm: filepath.Join(root, "bin", "vmm")}
	if _, err := os.Stat(h.vmm); err != nil {
		testenv.Skip(t, "no %s: run make build", h.vmm)
	}
	kernels, _ := filepath.Glob(filepath.Join(root, "build/images/kernel/vmlinuz-*"))
	guest := filepath.Join(root, "build/images/guest.cpio.gz")
	grub := filepath.Join(root, "build/images/grub-disk.img")
	for _, p := range []string{guest, grub} {
		if _, err := os.Stat(p); err != nil || len(kernels) == 0 {
			testenv.Skip(t, "no Debian kernel, agent initramfs and GRUB disk under build/images: run make images")
		}
	}
	if _, err := os.Stat(vmm.SeaBIOSPath); err != nil {
		testenv.Skip(t, "Debian's seabios package is not installed: scripts/setup.sh installs it")
	}
	h.env = append(os.Environ(), "VMM_KERNEL="+kernels[0], "VMM_GUEST="+guest, "VMM_GRUBDISK="+grub)
	return h
}

// shippedSuite returns suites/NAME with testhost.NoEarlyPCI on every
// command line: Linux's early PCI scans take seconds per boot in the nested
// test host (testhost.Guest's command line has it too) and none of the
// suites' checks is about them. The paths in the suites come from the
// environment, so a copy works from anywhere.
func (h host) shippedSuite(t *testing.T, name string) string {
	t.Helper()
	shipped, err := os.ReadFile(filepath.Join(h.root, "suites", name))
	require.NoError(t, err)
	text := string(shipped)
	const from = `cmdline = "console=ttyS0 `
	require.Equal(t, strings.Count(text, "cmdline = "), strings.Count(text, from), "every command line in suites/%s starts %s", name, from)
	return strings.ReplaceAll(text, from, from+testhost.NoEarlyPCI+" ")
}

type testRun struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// vmmTest runs `bin/vmm test args...` in dir, bounded by the test's own
// deadline (less a minute, so that a hang fails here with vmm's output).
func (h host) vmmTest(t *testing.T, dir string, args ...string) testRun {
	t.Helper()
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-time.Minute))
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, h.vmm, append([]string{"test"}, args...)...)
	cmd.Dir, cmd.Env = dir, h.env
	// SIGINT first: vmm test then stops its cases and writes what it has.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := testRun{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String(), time.Since(start)}
	var exitErr *exec.ExitError
	require.True(t, err == nil || errors.As(err, &exitErr), "vmm test %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, r.stdout, r.stderr)
	require.NoError(t, ctx.Err(), "vmm test %v ran out of time; stdout:\n%s\nstderr:\n%s", args, r.stdout, r.stderr)
	t.Logf("vmm test %s: exit %d in %v; last line: %s", strings.Join(args, " "), r.code, r.took.Round(time.Second), lastLine(r.stdout))
	return r
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// figures logs vmm test's own overhead: the wall time against the sum of
// the guests' runs, and each case's process time beyond its guest's.
func figures(t *testing.T, what string, r result.Run) {
	t.Helper()
	caseMS, guestMS := r.Sums()
	t.Logf("%s: %d cases, --jobs %d: wall %.1f s, sum of cases %.1f s, sum of guests %.1f s (wall/guests %.2f), overhead %.0f ms per case",
		what, len(r.Cases), r.Jobs, r.WallMS/1000, caseMS/1000, guestMS/1000, r.WallMS/guestMS, (caseMS-guestMS)/float64(len(r.Cases)))
	for _, c := range r.Cases {
		t.Logf("  %-26s %-5s exit %s, case %6.1f s, guest %6.1f s, to expected line %6.1f s", c.Name, c.Verdict, exitText(c.Exit),
			c.WallMS/1000, c.GuestMS/1000, htmlreport.TimeToExpected(c)/1000)
	}
}

func exitText(p *int) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

// outcome is what is checked of a case in every run: its verdict, exit
// code and stop reason.
type outcome struct {
	verdict result.Verdict
	exit    int
	stop    string
}

func outcomes(r result.Run) map[string]outcome {
	out := map[string]outcome{}
	for _, c := range r.Cases {
		o := outcome{verdict: c.Verdict, exit: -1, stop: c.StopReason}
		if c.Exit != nil {
			o.exit = *c.Exit
		}
		out[c.Name] = o
	}
	return out
}

// agentWant is what each case of suites/agent.toml must come to.
var agentWant = map[string]outcome{
	"agent/cpus=1/hyperv=all":  {result.Pass, 0, "poweroff"},
	"agent/cpus=1/hyperv=none": {result.Pass, 0, "poweroff"},
	"agent/cpus=2/hyperv=all":  {result.Pass, 0, "poweroff"},
	"agent/cpus=2/hyperv=none": {result.Pass, 0, "poweroff"},
	"panic":                    {result.Pass, vmm.ExitPanic, "panic"},
	"hang":                     {result.Pass, vmm.ExitTimeout, "timeout"},
	"firmware":                 {result.Pass, 0, "poweroff"},
	// Its cpus check fails, the agent's summary matches the suite's
	// fail pattern: exit 6 where 0 was expected.
	"must-fail": {result.Fail, vmm.ExitFailMatched, "fail-matched"},
}

// junitDoc is the part of a JUnit file that CI systems read, decoded
// independently of the writer's types.
type junitDoc struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Suites   []struct {
		Name  string `xml:"name,attr"`
		Cases []struct {
			Name    string `xml:"name,attr"`
			Time    string `xml:"time,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Error   *struct{} `xml:"error"`
			Skipped *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestKVMAgentSuite runs suites/agent.toml (the agent guest: Hyper-V all
// and none on one and two vCPUs, an expected panic, an expected timeout, a
// SeaBIOS/GRUB boot and a case that must fail) with --jobs 2, then as two
// shards merged: every case comes to its expected exit code and stop
// reason, the same in both; the JUnit file, read back, has the one failure
// with the agent's failed check in its console tail.
func TestKVMAgentSuite(t *testing.T) {
	h := prepare(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.toml")
	require.NoError(t, os.WriteFile(file, []byte(h.shippedSuite(t, "agent.toml")), 0o644))
	full := h.vmmTest(t, dir, file, "--jobs", "2", "--out", "full", "--junit", "full.xml", "--json", "full.json")
	require.Equal(t, exitCasesFailed, full.code, "stdout:\n%s\nstderr:\n%s", full.stdout, full.stderr)
	run, err := result.ReadJSON(filepath.Join(dir, "full.json"))
	require.NoError(t, err)
	figures(t, "--jobs 2", run)
	require.Equal(t, 8, run.SuiteCases)
	require.Equal(t, 2, run.Jobs)
	require.Equal(t, agentWant, outcomes(run), "stdout:\n%s", full.stdout)
	require.Contains(t, full.stdout, "8 cases: 7 passed, 1 failed, 0 errors")

	for _, c := range run.Cases {
		require.FileExists(t, filepath.Join(c.Dir, suite.ConsoleLog), c.Name)
		require.FileExists(t, filepath.Join(c.Dir, suite.ReportFile), c.Name)
		hv := strings.Contains(c.Name, "hyperv=all")
		_, err := os.Stat(filepath.Join(c.Dir, suite.HyperVTrace))
		require.Equal(t, hv, err == nil, "%s: a Hyper-V trace exactly where Hyper-V is on", c.Name)
		require.Equal(t, hv, c.HyperV != nil, "%s: the report's Hyper-V summary exactly where Hyper-V is on", c.Name)
		if !strings.HasPrefix(c.Name, "agent/") {
			continue
		}
		console, err := os.ReadFile(filepath.Join(c.Dir, suite.ConsoleLog))
		require.NoError(t, err)
		require.Regexp(t, `VMM-AGENT: summary pass=[1-9][0-9]* fail=0`, string(console), c.Name)
		if hv {
			// The guest ran on Hyper-V's clock and timers: the TSC page
			// and the synthetic timer in direct mode.
			require.Equal(t, "hyperv_clocksource_tsc_page", c.Clocksource, c.Name)
			require.Equal(t, "Hyper-V clockevent", c.Clockevent, c.Name)
			require.Subset(t, c.HyperV.MSRs, []string{"GUEST_OS_ID", "HYPERCALL", "REFERENCE_TSC", "STIMER0_CONFIG"}, c.Name)
		} else {
			// Only the agent's clocksource check names it (the quiet
			// kernel prints nothing), and only one vCPU has that check.
			require.Equal(t, c.Name == "agent/cpus=1/hyperv=none", c.Clocksource != "", "%s: clocksource %q", c.Name, c.Clocksource)
			require.False(t, strings.HasPrefix(c.Clocksource, "hyperv"), "%s: %s", c.Name, c.Clocksource)
		}
	}
	byName := map[string]result.Case{}
	for _, c := range run.Cases {
		byName[c.Name] = c
	}
	mustFail := byName["must-fail"]
	require.Equal(t, "exit 6, expected 0 (fail-matched: VMM-AGENT: summary pass=1 fail=1)", mustFail.Detail)
	require.Contains(t, mustFail.ConsoleTail, "check=cpus result=fail")
	require.Contains(t, byName["panic"].StopDetail, "Kernel panic")
	console, err := os.ReadFile(filepath.Join(byName["firmware"].Dir, suite.ConsoleLog))
	require.NoError(t, err)
	require.Contains(t, string(console), "SeaBIOS (version", "the firmware case booted through SeaBIOS")
	require.Regexp(t, `VMM-AGENT: summary pass=[1-9][0-9]* fail=0`, string(console))

	// The JUnit file, as a CI system reads it.
	data, err := os.ReadFile(filepath.Join(dir, "full.xml"))
	require.NoError(t, err)
	var doc junitDoc
	require.NoError(t, xml.Unmarshal(data, &doc))
	require.Equal(t, 8, doc.Tests)
	require.Equal(t, 1, doc.Failures)
	require.Zero(t, doc.Errors)
	require.Len(t, doc.Suites, 1)
	require.Equal(t, "agent", doc.Suites[0].Name)
	var junitNames []string
	for _, tc := range doc.Suites[0].Cases {
		junitNames = append(junitNames, tc.Name)
		require.Nil(t, tc.Error, tc.Name)
		require.Nil(t, tc.Skipped, tc.Name)
		if tc.Name != "must-fail" {
			require.Nil(t, tc.Failure, tc.Name)
			continue
		}
		require.NotNil(t, tc.Failure)
		require.Equal(t, mustFail.Detail, tc.Failure.Message)
		require.Contains(t, tc.Failure.Text, "check=cpus result=fail")
	}
	require.ElementsMatch(t, slices.Collect(maps.Keys(agentWant)), junitNames)

	// Two shards, one after the other, then merged: the same outcomes.
	var shards []string
	for k := 1; k <= 2; k++ {
		out := fmt.Sprintf("shard%d", k)
		r := h.vmmTest(t, dir, file, "--jobs", "2", "--shard", fmt.Sprintf("%d/2", k), "--out", out)
		sr, err := result.ReadJSON(filepath.Join(dir, out, "results.json"))
		require.NoError(t, err)
		figures(t, "shard "+out, sr)
		want := 0
		for _, c := range sr.Cases {
			if c.Name == "must-fail" {
				want = exitCasesFailed
			}
		}
		require.Equal(t, want, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		require.NotEmpty(t, sr.Cases, "shard %d of 8 cases", k)
		shards = append(shards, out)
	}
	m := h.vmmTest(t, dir, "merge", "--json", "merged.json", "--junit", "merged.xml", shards[0], shards[1])
	require.Equal(t, exitCasesFailed, m.code, "stderr: %s", m.stderr)
	merged, err := result.ReadJSON(filepath.Join(dir, "merged.json"))
	require.NoError(t, err)
	require.Equal(t, []string{"1/2", "2/2"}, merged.Shards)
	require.Equal(t, outcomes(run), outcomes(merged), "--jobs 2 and two shards merged agree")
	data, err = os.ReadFile(filepath.Join(dir, "merged.xml"))
	require.NoError(t, err)
	var mdoc junitDoc
	require.NoError(t, xml.Unmarshal(data, &mdoc))
	require.Equal(t, 8, mdoc.Tests)
	require.Equal(t, 1, mdoc.Failures)
}

// ablationSwitches are the switches TestKVMHyperVAblation turns off one at a
// time: those of Hyper-V's clock and timers (six boots, where the shipped
// suite's "all" takes fourteen).
const ablationSwitches = "vpindex,time,synic,stimer,stimer-direct"

// TestKVMHyperVAblation runs suites/hyperv-ablation.toml over
// ablationSwitches on one vCPU: the HTML page's ablation table, as headless
// Chromium renders it, has the baseline and a row per switch with the
// clocksource and clockevent the guest used and the MSRs it touched (each
// row as the results file says, and what each switch must change), and its
// screenshot is not blank.
func TestKVMHyperVAblation(t *testing.T) {
	h := prepare(t)
	bin := chromiumtest.Binary(t)
	dir := t.TempDir()
	text := h.shippedSuite(t, "hyperv-ablation.toml")
	for _, r := range [][2]string{
		{`hyperv = ["ablate:all"]`, `hyperv = ["ablate:` + ablationSwitches + `"]`},
		{"\ncpus = 2\n", "\ncpus = 1\n"},
	} {
		require.Equal(t, 1, strings.Count(text, r[0]), "suites/hyperv-ablation.toml has %q once", r[0])
		text = strings.Replace(text, r[0], r[1], 1)
	}
	file := filepath.Join(dir, "hyperv-ablation.toml")
	require.NoError(t, os.WriteFile(file, []byte(text), 0o644))

	r := h.vmmTest(t, dir, file, "--jobs", "2", "--out", "out", "--json", "ablation.json", "--html", "ablation.html")
	require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	run, err := result.ReadJSON(filepath.Join(dir, "ablation.json"))
	require.NoError(t, err)
	figures(t, "ablation", run)

	base := "agent/hyperv=" + ablationSwitches
	order := []string{base, base + ",vpindex=off", base + ",time=off", base + ",synic=off", base + ",stimer=off", base + ",stimer-direct=off"}
	byName := map[string]result.Case{}
	for _, c := range run.Cases {
		byName[c.Name] = c
		require.Equal(t, result.Pass, c.Verdict, "%s: %s", c.Name, c.Detail)
		require.Equal(t, "expect-matched", c.StopReason, c.Name)
		require.NotNil(t, c.HyperV, "%s: the report's Hyper-V summary", c.Name)
		require.Subset(t, c.HyperV.MSRs, []string{"GUEST_OS_ID", "HYPERCALL"}, "%s: Hyper-V's base interface", c.Name)
		require.NotEmpty(t, c.Clocksource, c.Name)
		require.NotEmpty(t, c.Clockevent, c.Name)
	}
	require.Len(t, byName, len(order))
	// What the switches do to Linux: the TSC page is its clocksource
	// exactly while time is on; the synthetic timer in direct mode its
	// clockevent exactly while every switch is on.
	for _, name := range order {
		c := byName[name]
		timeOn := !strings.HasSuffix(name, ",time=off")
		require.Equal(t, timeOn, c.Clocksource == "hyperv_clocksource_tsc_page", "%s: clocksource %s", name, c.Clocksource)
		require.Equal(t, timeOn, slices.Contains(c.HyperV.MSRs, "REFERENCE_TSC"), "%s: %v", name, c.HyperV.MSRs)
		all := name == base
		require.Equal(t, all, c.Clockevent == "Hyper-V clockevent", "%s: clockevent %s", name, c.Clockevent)
		require.Equal(t, all, slices.Contains(c.HyperV.MSRs, "STIMER0_CONFIG"), "%s: %v", name, c.HyperV.MSRs)
	}

	// The page, as Chromium renders it. In the nested test host Chromium
	// runs under software emulation: minutes, not seconds.
	start := time.Now()
	p := chromiumtest.Open(t, bin, filepath.Join(dir, "ablation.html"), 1280, 1000, 5*time.Minute)
	t.Logf("chromium: DOM and screenshot in %v", time.Since(start).Round(100*time.Millisecond))
	tables := chromiumtest.Find(p.DOM, chromiumtest.ByID("ablation-0"))
	require.Len(t, tables, 1, "one ablation table")
	require.Empty(t, chromiumtest.Find(p.DOM, chromiumtest.ByID("ablation-1")), "one ablation table")
	names, rows := chromiumtest.BodyRows(tables[0])
	require.Equal(t, order, names, "the baseline, then a row per switch in the switches' order")
	also := map[string]string{"": "", "vpindex": "synic, stimer, stimer-direct", "time": "stimer, stimer-direct",
		"synic": "stimer, stimer-direct", "stimer": "stimer-direct", "stimer-direct": ""}
	dashed := func(s []string) string {
		if len(s) == 0 {
			return "-"
		}
		return strings.Join(s, ", ")
	}
	for i, name := range names {
		c := byName[name]
		off := c.Ablation.Off
		label := off
		if off == "" {
			label = "(none: baseline)"
		}
		require.Equal(t, []string{label, also[off], c.Clocksource, c.Clockevent, dashed(c.HyperV.MSRs), dashed(c.HyperV.Hypercalls),
			fmt.Sprintf("%.2f s", htmlreport.TimeToExpected(c)/1000), "pass"}, rows[i][:8], name)
		if off == "" {
			require.Empty(t, rows[i][8], "the baseline changes nothing")
		} else {
			require.NotEmpty(t, rows[i][8], "%s: what changed against the baseline", name)
		}
	}
	var changes []string
	for _, li := range chromiumtest.Find(tables[0], chromiumtest.Elem("li")) {
		changes = append(changes, chromiumtest.Text(li))
	}
	require.Contains(t, changes, "clocksource hyperv_clocksource_tsc_page → "+byName[base+",time=off"].Clocksource)
	require.Contains(t, changes, "no MSR REFERENCE_TSC")
	require.Contains(t, changes, "clockevent Hyper-V clockevent → "+byName[base+",stimer=off"].Clockevent)
	require.Contains(t, changes, "no MSR STIMER0_CONFIG")
	cases := chromiumtest.Find(p.DOM, chromiumtest.ByID("cases"))
	require.Len(t, cases, 1)
	names, _ = chromiumtest.BodyRows(cases[0])
	require.ElementsMatch(t, order, names, "the table of cases")

	seen := chromiumtest.Colours(p.Shot)
	require.Greater(t, len(seen), 10, "colours in the screenshot")
	require.Positive(t, seen[chromiumtest.RGB(t, htmlreport.PassFill)], "the green bars of passed cases")
	require.Zero(t, seen[chromiumtest.RGB(t, htmlreport.FailFill)], "no red bar")
}

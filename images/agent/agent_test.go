package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCmdline(t *testing.T) {
	o, problems := parseCmdline(`console=ttyS0 quiet vmm.checks=boot,cpus,clocksource,cpus vmm.action=panic vmm.expect_cpus=2 panic=-1`)
	assert.Empty(t, problems)
	assert.Equal(t, options{checks: []string{"boot", "cpus", "clocksource"}, action: actionPanic, expectCPUs: 2}, o)

	o, problems = parseCmdline("console=ttyS0")
	assert.Empty(t, problems)
	assert.Equal(t, options{checks: []string{"boot"}, action: actionPoweroff}, o)

	o, problems = parseCmdline(`vmm.action=explode vmm.expect_cpus=x vmm.checks="boot, cpus"`)
	assert.Len(t, problems, 2)
	assert.Equal(t, actionPoweroff, o.action, "a bad action keeps the default")
	assert.Zero(t, o.expectCPUs)
	assert.Equal(t, []string{"boot", "cpus"}, o.checks)
}

func TestSplitCmdline(t *testing.T) {
	assert.Equal(t, []string{"a=1", "b=two words", "c"}, splitCmdline(` a=1  b="two words"	c `))
	assert.Equal(t, []string{""}, splitCmdline(`""`))
	assert.Empty(t, splitCmdline("   "))
}

func TestCountCPUList(t *testing.T) {
	for in, want := range map[string]int{"0": 1, "0-1": 2, "0-3,5,7-8": 7, "": 0, "0\n": 1} {
		got, err := countCPUList(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"x", "3-1", "-1", "0-", "0,,1", "0-4294967295", "0-65535,0-65535"} {
		_, err := countCPUList(bad)
		assert.ErrorIs(t, err, errCPUList, bad)
	}
}

func TestParseKernelLog(t *testing.T) {
	buf := "<6>[    0.000000] Linux version 6.1.0\n<4>[    1.5] tsc: Marking TSC unstable due to x\nplain\n\n<6>[ 2.0] \n"
	assert.Equal(t, []string{"Linux version 6.1.0", "tsc: Marking TSC unstable due to x", "plain"}, parseKernelLog([]byte(buf)))
}

var lineRE = regexp.MustCompile(`^VMM-AGENT: check=([a-z_-]+) result=(pass|fail) detail=(".*")$`)

func TestLineFormat(t *testing.T) {
	assert.Equal(t, "VMM-AGENT: start\n", startLine())
	assert.Equal(t, "VMM-AGENT: summary pass=3 fail=1\n", summaryLine(3, 1))
	l := checkLine("boot", true, `kernel=6.1 "quoted" <b> & new
line`)
	assert.True(t, strings.HasSuffix(l, "\n"))
	assert.Equal(t, 1, strings.Count(l, "\n"), "one line even if the detail has newlines")
	m := lineRE.FindStringSubmatch(strings.TrimSuffix(l, "\n"))
	require.NotNil(t, m, l)
	var detail string
	require.NoError(t, json.Unmarshal([]byte(m[3]), &detail))
	assert.Equal(t, "kernel=6.1 \"quoted\" <b> & new\nline", detail)
	assert.Contains(t, checkLine("x", false, ""), "result=fail")
}

func TestDebugExitByte(t *testing.T) {
	assert.Equal(t, byte(1), debugExitByte(0))
	assert.Equal(t, byte(3), debugExitByte(3))
	assert.Equal(t, byte(127), debugExitByte(1000))
}

func guestFS(online, present, clock string) fstest.MapFS {
	return fstest.MapFS{
		"proc/uptime":                    {Data: []byte("3.14 1.00\n")},
		"sys/devices/system/cpu/online":  {Data: []byte(online + "\n")},
		"sys/devices/system/cpu/present": {Data: []byte(present + "\n")},
		"sys/devices/system/clocksource/clocksource0/current_clocksource":   {Data: []byte(clock + "\n")},
		"sys/devices/system/clocksource/clocksource0/available_clocksource": {Data: []byte("kvm-clock tsc hpet acpi_pm\n")},
	}
}

func logOf(lines ...string) func() ([]string, error) {
	return func() ([]string, error) { return lines, nil }
}

func TestChecks(t *testing.T) {
	r := newRegistry()
	e := &env{root: guestFS("0-1", "0-1", "kvm-clock"), kernelLog: logOf("hello"), release: "6.1.0-56-amd64"}

	pass, detail := r["boot"](e)
	assert.True(t, pass)
	assert.Equal(t, "kernel=6.1.0-56-amd64 uptime=3.14s", detail)

	pass, detail = r["cpus"](e)
	assert.True(t, pass, detail)
	e.opts.expectCPUs = 2
	pass, _ = r["cpus"](e)
	assert.True(t, pass)
	e.opts.expectCPUs = 4
	pass, detail = r["cpus"](e)
	assert.False(t, pass)
	assert.Contains(t, detail, "expect_cpus=4")
	e.opts.expectCPUs = 0
	e.root = guestFS("0", "0-1", "kvm-clock")
	pass, _ = r["cpus"](e)
	assert.False(t, pass, "a present CPU that did not come online fails")

	pass, detail = r["clocksource"](e)
	assert.True(t, pass, detail)
	assert.Contains(t, detail, "current=kvm-clock")
	e.kernelLog = logOf("clocksource: tsc: Marking TSC unstable due to clocksource watchdog")
	pass, detail = r["clocksource"](e)
	assert.False(t, pass)
	assert.Contains(t, detail, "Marking TSC unstable")
	e.kernelLog = logOf()
	e.root = guestFS("0", "0", "refined-jiffies")
	pass, _ = r["clocksource"](e)
	assert.False(t, pass)
	e.kernelLog = func() ([]string, error) { return nil, errors.New("no syslog") }
	e.root = guestFS("0", "0", "tsc")
	pass, _ = r["clocksource"](e)
	assert.False(t, pass, "an unreadable kernel log is a failure, not a silent pass")

	e.root = fstest.MapFS{}
	pass, _ = r["cpus"](e)
	assert.False(t, pass)

	pass, _ = r["modules"](e)
	assert.True(t, pass)
	e.moduleErr = errors.New("finit_module x.ko: ENOEXEC")
	pass, detail = r["modules"](e)
	assert.False(t, pass)
	assert.Contains(t, detail, "ENOEXEC")
}

func TestRegistryRun(t *testing.T) {
	r := registry{
		"ok":   func(*env) (bool, string) { return true, "fine" },
		"bad":  func(*env) (bool, string) { return false, "broken" },
		"boom": func(*env) (bool, string) { panic("kaboom") },
	}
	var got []outcome
	pass, fail := r.run(&env{}, []string{"ok", "bad", "boom", "nope"}, func(o outcome) { got = append(got, o) })
	assert.Equal(t, 1, pass)
	assert.Equal(t, 3, fail)
	require.Len(t, got, 4)
	assert.Equal(t, []string{"ok", "bad", "boom", "nope"}, []string{got[0].name, got[1].name, got[2].name, got[3].name})
	assert.Contains(t, got[2].detail, "kaboom")
	assert.Contains(t, got[3].detail, "unknown check; known: bad,boom,ok")
}

// fakeSystem records what run asked of the machine.
type fakeSystem struct {
	line      string
	mountErr  error
	modErr    error
	root      fstest.MapFS
	action    string
	failures  int
	endResult error
}

func (f *fakeSystem) mountAll() error          { return f.mountErr }
func (f *fakeSystem) loadModules() error       { return f.modErr }
func (f *fakeSystem) cmdline() (string, error) { return f.line, nil }
func (f *fakeSystem) release() string          { return "6.1.0-t" }
func (f *fakeSystem) env() *env {
	return &env{root: f.root, kernelLog: logOf(), release: f.release()}
}
func (f *fakeSystem) end(action string, failures int) error {
	f.action, f.failures = action, failures
	return f.endResult
}

func TestRunProtocol(t *testing.T) {
	sys := &fakeSystem{
		line: "console=ttyS0 vmm.checks=boot,cpus,clocksource vmm.expect_cpus=2 vmm.action=reboot",
		root: guestFS("0", "0", "tsc"),
	}
	var out bytes.Buffer
	run(&out, sys)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 6, out.String())
	assert.Equal(t, "VMM-AGENT: start", lines[0], "start is the first line")
	assert.Regexp(t, `^VMM-AGENT: check=boot result=pass `, lines[1])
	assert.Regexp(t, `^VMM-AGENT: check=cpus result=fail detail=".*expect_cpus=2"$`, lines[2])
	assert.Regexp(t, `^VMM-AGENT: check=clocksource result=pass `, lines[3])
	assert.Equal(t, "VMM-AGENT: summary pass=2 fail=1", lines[4])
	assert.Equal(t, "VMM-AGENT: action=reboot", lines[5])
	assert.Equal(t, "reboot", sys.action)
	assert.Equal(t, 1, sys.failures)
}

func TestRunReportsSetupProblems(t *testing.T) {
	sys := &fakeSystem{
		line:      "vmm.action=bogus",
		mountErr:  errors.New("mount /sys: EPERM"),
		root:      guestFS("0", "0", "tsc"),
		endResult: errNotEnded,
	}
	var out bytes.Buffer
	run(&out, sys)
	s := out.String()
	assert.Contains(t, s, `VMM-AGENT: check=setup result=fail detail="mount /sys: EPERM; unknown vmm.action \"bogus\""`)
	assert.Contains(t, s, "VMM-AGENT: summary pass=1 fail=1")
	assert.Contains(t, s, "VMM-AGENT: error \"machine still running after action\"")
	assert.Equal(t, "poweroff", sys.action)
	assert.Equal(t, 1, sys.failures, "the failure count goes to the debug-exit port")
}

func FuzzParseCmdline(f *testing.F) {
	f.Add(`console=ttyS0 vmm.checks=boot,cpus vmm.action=hang vmm.expect_cpus=2`)
	f.Add(`vmm.checks="a b" "unterminated`)
	f.Add(`vmm.expect_cpus=99999999999999999999`)
	f.Fuzz(func(t *testing.T, s string) {
		o, _ := parseCmdline(s)
		switch o.action {
		case actionPoweroff, actionReboot, actionPanic, actionHang:
		default:
			t.Fatalf("invalid action %q", o.action)
		}
		if o.expectCPUs < 0 {
			t.Fatal("negative expect_cpus")
		}
		for _, c := range o.checks {
			if c == "" {
				t.Fatal("empty check name")
			}
		}
	})
}

func FuzzCountCPUList(f *testing.F) {
	f.Add("0-3,5,7-8")
	f.Add("0-65535")
	f.Add("1-0")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := countCPUList(s)
		if err == nil && (n < 0 || n > maxCPUs) {
			t.Fatalf("count %d out of range", n)
		}
	})
}

func FuzzParseKernelLog(f *testing.F) {
	f.Add([]byte("<6>[    0.000000] Linux version\n<4>[1.0] x\n"))
	f.Add([]byte("<>[\n<1234567>]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, l := range parseKernelLog(b) {
			if l == "" || strings.Contains(l, "\n") {
				t.Fatalf("bad line %q", l)
			}
		}
	})
}

func FuzzCheckLine(f *testing.F) {
	f.Add("boot", "kernel=6.1 \"x\"\n")
	f.Fuzz(func(t *testing.T, name, detail string) {
		if !regexp.MustCompile(`^[a-z_-]+$`).MatchString(name) {
			return
		}
		l := checkLine(name, true, detail)
		if strings.Count(l, "\n") != 1 {
			t.Fatalf("not one line: %q", l)
		}
		m := lineRE.FindStringSubmatch(strings.TrimSuffix(l, "\n"))
		if m == nil {
			t.Fatalf("line does not parse: %q", l)
		}
		var got string
		if err := json.Unmarshal([]byte(m[3]), &got); err != nil {
			t.Fatalf("detail is not JSON: %v", err)
		}
	})
}

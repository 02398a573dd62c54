package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/internal/testimage"
	"github.com/vmmdev/vmm/vmm"
)

// mainEnv makes the test binary act as the vmm command, so the CLI tests
// run vmm in child processes: seccomp (on by default) cannot be removed
// once installed, signals and kills need a process of their own.
const mainEnv = "VMM_TEST_AS_VMM"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// testMemory is the tiny guests' RAM; the MMIO hammer uses addresses above it.
const testMemory = "64M"

func vmmCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	return cmd
}

func kernelFile(t *testing.T, code []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bzImage")
	require.NoError(t, os.WriteFile(p, testimage.BzImage64(code), 0o644))
	return p
}

type childRun struct {
	code           int
	stdout, stderr string
	report         vmm.Report
}

// runVMM runs `vmm run --kernel <code> --memory 64M --report R args...` in a
// child and decodes its report.
func runVMM(t *testing.T, code []byte, args ...string) childRun {
	t.Helper()
	kvmtest.Require(t)
	report := filepath.Join(t.TempDir(), "report.json")
	full := append([]string{"run", "--kernel", kernelFile(t, code), "--memory", testMemory,
		"--console", "stdio", "--report", report}, args...)
	cmd := vmmCommand(full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var r childRun
	r.stdout, r.stderr = stdout.String(), stderr.String()
	if err != nil {
		_, isExit := err.(*exec.ExitError)
		require.True(t, isExit, "%v", err)
	}
	r.code = cmd.ProcessState.ExitCode()
	data, err := os.ReadFile(report)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &r.report), "report: %s\nstderr: %s", data, r.stderr)
	return r
}

// TestKVMExitCodes runs a guest for every exit code a guest can cause, under
// the default seccomp filter, and checks the code and the report agree.
func TestKVMExitCodes(t *testing.T) {
	cases := []struct {
		name   string
		code   []byte
		args   []string
		exit   int
		reason string
		source string
	}{
		{"poweroff", guestPowerOff(), nil, 0, "poweroff", "acpi"},
		{"expect", guestPrintThenSpin("booting\nREADY\n"), []string{"--expect", "^READY$", "--fail", "panic"}, 0, "expect-matched", "console"},
		{"pvpanic", guestPVPanic(), nil, 3, "panic", "pvpanic"},
		{"console panic", guestPrintThenSpin("Kernel panic - not syncing: test\n"), nil, 3, "panic", "console"},
		{"halted", guestCliHlt(), nil, 3, "halted", "vmm"},
		{"timeout", guestSpin(), []string{"--timeout", "300ms"}, 4, "timeout", "vmm"},
		{"reset", guestI8042(), nil, 5, "reset", "i8042"},
		{"fail", guestPrintThenSpin("ok\nFAILED: x\n"), []string{"--fail", "FAILED", "--expect", "done"}, 6, "fail-matched", "console"},
		{"debug-exit", newAsm().debugExit(0x21).bytes(), nil, 0x43, "debug-exit", "debug-exit port"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runVMM(t, c.code, append([]string{"--timeout", "20s"}, c.args...)...)
			require.Equal(t, c.exit, r.code, "stderr: %s", r.stderr)
			require.Equal(t, c.exit, r.report.ExitCode)
			require.Equal(t, c.reason, r.report.Stop.Reason)
			require.Equal(t, c.source, r.report.ExitSource)
			require.Equal(t, vmm.ReportVersion, r.report.Version)
			require.Positive(t, r.report.Timing.WallMS)
			require.Positive(t, r.report.Timing.StopUnixNS)
			require.Positive(t, r.report.Timing.CommandUnixNS)
			require.LessOrEqual(t, r.report.Timing.CommandUnixNS, r.report.Timing.StartUnixNS)
		})
	}
}

func TestKVMExpectReport(t *testing.T) {
	r := runVMM(t, guestPrintThenSpin("hello\nREADY\nafter\n"), "--expect", "READY", "--timeout", "20s")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "hello\nREADY", r.stdout, "stopped as soon as the line matched")
	require.Equal(t, &vmm.ReportMatch{Kind: "expect", Pattern: "READY", Line: "READY"}, r.report.Match)
	require.NotNil(t, r.report.Timing.FirstConsoleByteMS)
	require.NotNil(t, r.report.Timing.MatchMS)
	require.LessOrEqual(t, *r.report.Timing.FirstConsoleByteMS, *r.report.Timing.MatchMS)
	require.LessOrEqual(t, *r.report.Timing.MatchMS, r.report.Timing.WallMS)
	require.EqualValues(t, len("hello\nREADY"), r.report.Devices.UART.TxBytes)
	require.Positive(t, r.report.Exits["io"])
}

func TestKVMConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vmm.json")
	require.NoError(t, os.WriteFile(cfg, []byte(`{"memory": "64M", "cpus": 2, "expect": "never", "fail": "FAILED", "timeout": "20s", "cmdline": "from-file"}`), 0o644))
	// The command line's --expect wins over the file's.
	r := runVMM(t, guestEchoCmdline(), "--config", cfg, "--expect", "from-(file|flag)")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "expect-matched", r.report.Stop.Reason)
	require.Equal(t, "from-(file|flag)", r.report.Match.Pattern)
	require.Equal(t, "from-file", r.report.Match.Line, "cmdline came from the file")
}

// TestKVMConsoleLogSurvivesKill: everything the guest wrote before a SIGKILL is
// in the --console-log file (it is written before the console, unbuffered).
func TestKVMConsoleLogSurvivesKill(t *testing.T) {
	kvmtest.Require(t)
	var text strings.Builder
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&text, "line %02d of the console log\n", i)
	}
	text.WriteString("DONE\n")
	log := filepath.Join(t.TempDir(), "console.log")
	cmd := vmmCommand("run", "--kernel", kernelFile(t, guestPrintThenSpin(text.String())), "--memory", testMemory,
		"--console-log", log, "--timeout", "60s")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var seen bytes.Buffer
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		seen.WriteString(sc.Text() + "\n")
		if sc.Text() == "DONE" {
			break
		}
	}
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	got, err := os.ReadFile(log)
	require.NoError(t, err)
	require.Equal(t, text.String(), seen.String())
	require.Equal(t, seen.String(), string(got))
}

// TestKVMSignalStopsGuest: SIGTERM stops a running guest; vmm exits 130 after
// writing its report.
func TestKVMSignalStopsGuest(t *testing.T) {
	kvmtest.Require(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		report := filepath.Join(t.TempDir(), "r.json")
		cmd := vmmCommand("run", "--kernel", kernelFile(t, guestPrintThenSpin("UP\n")), "--memory", testMemory,
			"--report", report, "--timeout", "60s")
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		line, err := bufio.NewReader(stdout).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "UP\n", line)
		require.NoError(t, cmd.Process.Signal(sig))
		_ = cmd.Wait()
		require.Equal(t, vmm.ExitInterrupted, cmd.ProcessState.ExitCode(), sig.String())
		data, err := os.ReadFile(report)
		require.NoError(t, err)
		var rep vmm.Report
		require.NoError(t, json.Unmarshal(data, &rep))
		require.Equal(t, "interrupted", rep.Stop.Reason)
		require.Equal(t, sig.String(), rep.Stop.Detail)
	}
}

const signalChildEnv = "VMM_TEST_SIGNAL_CHILD"

// TestSecondSignalForcesExit: the first signal cancels the run; a second one
// restores the terminal and exits 130 without waiting.
func TestSecondSignalForcesExit(t *testing.T) {
	if os.Getenv(signalChildEnv) == "1" {
		ctx, stop := handleSignals(func() { fmt.Println("restored") }, os.Stderr)
		defer stop()
		require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
		<-ctx.Done()
		fmt.Println("cancelled")
		require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGINT))
		select {} // the handler must exit the process
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSecondSignalForcesExit$")
	cmd.Env = append(os.Environ(), signalChildEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	timer := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	_ = cmd.Run()
	require.Equal(t, vmm.ExitInterrupted, cmd.ProcessState.ExitCode(), "stderr: %s", stderr.String())
	require.Equal(t, "cancelled\nrestored\n", stdout.String())
	require.Contains(t, stderr.String(), "second signal (interrupt)")
}

// TestKVMConcurrentVMs runs 16 vmm processes at once; each echoes its own
// command line and exits with a code derived from it. Nothing is shared:
// no fixed paths, ports or names.
func TestKVMConcurrentVMs(t *testing.T) {
	kvmtest.Require(t)
	kernel := kernelFile(t, guestEchoCmdline())
	const n = 16
	type result struct {
		code   int
		stdout string
		stderr string
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := vmmCommand("run", "--kernel", kernel, "--memory", testMemory, "--cpus", "2",
				"--cmdline", fmt.Sprintf("vm %02d of %d %c", i, n, 'A'+i), "--timeout", "60s")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			_ = cmd.Run()
			results[i] = result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
		}()
	}
	wg.Wait()
	for i, r := range results {
		require.Equal(t, fmt.Sprintf("vm %02d of %d %c\n", i, n, 'A'+i), r.stdout, "vm %d: %s", i, r.stderr)
		require.Equal(t, (2*('A'+i)+1)&0xff, r.code, "vm %d: %s", i, r.stderr)
		require.Empty(t, r.stderr)
	}
}

// overheadBudgetKiB is the most resident memory a hostile guest may cost
// beyond its RAM: the run's whole peak RSS, guest pages included, must stay
// under guest RAM plus this. Where transparent huge pages are "always"
// (Debian's kernels, the nested test host) the Go heap is backed by 2 MiB
// pages and vmm's overhead reads 11-15 MiB, against 9-10 MiB under
// "madvise"; the budget guards against growth a guest can cause, above both.
const overheadBudgetKiB = 20 << 10

// floodBytes is what the console-flood guest writes without a newline.
const floodBytes = 32 << 10

// TestKVMHostileGuests: guests that misbehave end with the right code and keep
// vmm within its memory budget.
func TestKVMHostileGuests(t *testing.T) {
	cases := []struct {
		name   string
		code   []byte
		args   []string
		exit   int
		reason string
		check  func(t *testing.T, r childRun)
	}{
		{"spin without exits", guestSpin(), []string{"--timeout", "500ms", "--cpus", "4"}, 4, "timeout", nil},
		{"garbage to every port", guestGarbagePorts(), nil, 85, "debug-exit", func(t *testing.T, r childRun) {
			require.Greater(t, r.report.Devices.UnclaimedPIO.Reads, uint64(60000))
			require.Greater(t, r.report.Devices.UnclaimedPIO.Writes, uint64(60000))
			require.Greater(t, r.report.Exits["io"], uint64(120000))
		}},
		{"hammer unclaimed MMIO", guestMMIOHammer(), nil, 43, "debug-exit", func(t *testing.T, r childRun) {
			require.Equal(t, vmm.ReportUnclaimed{Reads: 4096, Writes: 4096}, r.report.Devices.UnclaimedMMIO)
		}},
		{"triple fault", guestTripleFault(), nil, 5, "reset", nil},
		// PCI configuration space (ECAM, bus 0) with a virtio device on it:
		// BARs, command registers and capabilities all get garbage.
		{"garbage to PCI config space", guestGarbageMMIO(0xe0000000, 0x4000), []string{"--rng"}, 45, "debug-exit", nil},
		// The PCI MMIO window, where vmm places the BARs.
		{"garbage to the PCI MMIO window", guestGarbageMMIO(0xc0000000, 0x8000), []string{"--rng"}, 45, "debug-exit", nil},
		{"halt with interrupts off", guestCliHlt(), []string{"--cpus", "2"}, 3, "halted", nil},
		// 32 KiB (8 times the matcher's line limit) on one line that never ends, watched by --expect: the
		// line matcher's memory stays bounded. A count, not a time, makes
		// the flood the same size however fast the host is.
		{"console flood without newlines", newAsm().
			emit(0x66, 0xba, 0xf8, 0x03, 0xb0, 'x'). // mov dx, 0x3f8; mov al, 'x'
			emit(0xb9).emit(le32(floodBytes)...).    // mov ecx, floodBytes
			label("l").emit(0xee).j(0xe2, "l").      // out dx, al; loop l
			debugExit(21).bytes(),
			[]string{"--expect", "never", "--console", "none"}, 43, "debug-exit", func(t *testing.T, r childRun) {
				require.Equal(t, uint64(floodBytes), r.report.Devices.UART.TxBytes)
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runVMM(t, c.code, append([]string{"--timeout", "30s"}, c.args...)...)
			require.Equal(t, c.exit, r.code, "report %+v\nstderr: %s", r.report.Stop, r.stderr)
			require.Equal(t, c.reason, r.report.Stop.Reason)
			// The report's peak (VmHWM) is vmm's own; the child's rusage
			// is not: across fork+exec it starts from this test's peak.
			mem := r.report.Memory
			require.Positive(t, mem.PeakRSSKiB)
			require.Less(t, mem.PeakRSSKiB, uint64(64<<10+overheadBudgetKiB), "%+v", mem)
			require.Less(t, mem.OverheadKiB, uint64(overheadBudgetKiB), "%+v", mem)
			t.Logf("memory %+v, %d exits", mem, r.report.Exits["io"]+r.report.Exits["mmio"])
			if c.check != nil {
				c.check(t, r)
			}
		})
	}
}

// TestKVMSeccompFlag: the filter is on by default (seen in /proc/PID/status
// while the guest runs) and off with --seccomp=false.
func TestKVMSeccompFlag(t *testing.T) {
	kvmtest.Require(t)
	kernel := kernelFile(t, guestPrintThenSpin("UP\n"))
	for _, c := range []struct {
		args      []string
		mode, nnp string
	}{
		{nil, "2", "1"},
		{[]string{"--seccomp=false"}, "0", "0"},
	} {
		cmd := vmmCommand(append([]string{"run", "--kernel", kernel, "--memory", testMemory, "--timeout", "60s"}, c.args...)...)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		line, err := bufio.NewReader(stdout).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "UP\n", line)
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		require.NoError(t, cmd.Process.Kill())
		_ = cmd.Wait()
		require.NoError(t, err)
		require.Contains(t, string(status), "\nSeccomp:\t"+c.mode+"\n", "%v", c.args)
		require.Contains(t, string(status), "\nNoNewPrivs:\t"+c.nnp+"\n", "%v", c.args)
	}
}

// TestReportOnVMMError: once the report file is open, a failure to build
// the VM still leaves a report saying so.
func TestReportOnVMMError(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "bzImage")
	require.NoError(t, os.WriteFile(kernel, testimage.BzImage64([]byte{0xf4}), 0o644))
	report := filepath.Join(dir, "r.json")
	var stdout, stderr bytes.Buffer
	code := run([]string{"run", "--kernel", kernel, "--kvm-device", filepath.Join(dir, "no-kvm"), "--report", report}, nil, &stdout, &stderr)
	require.Equal(t, vmm.ExitError, code)
	data, err := os.ReadFile(report)
	require.NoError(t, err)
	var rep vmm.Report
	require.NoError(t, json.Unmarshal(data, &rep))
	require.Equal(t, 1, rep.ExitCode)
	require.Equal(t, "error", rep.Stop.Reason)
	require.Contains(t, rep.Stop.Detail, "no-kvm")
	require.Zero(t, rep.Timing.StartUnixNS, "the VM never ran")
}

package testhost

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/internal/testenv"
)

// fakeEnv makes the test binary act as the outer QEMU (see fakeQEMU).
const fakeEnv = "TESTHOST_FAKE_QEMU"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeEnv); mode != "" {
		os.Exit(fakeQEMU(mode))
	}
	os.Exit(m.Run())
}

func fakeQEMU(mode string) int {
	fmt.Print("SeaBIOS (version 1.16)\r\n")
	fmt.Println(scenario.KVMReadyLine())
	fmt.Println(scenario.Result{Name: "boot", Run: 1, Runner: "vmm", Pass: true, FirstLineS: 20, TotalS: 22}.Line())
	switch mode {
	case "done":
		fmt.Println(scenario.DoneLine(1, 0))
	case "crash":
		fmt.Fprintln(os.Stderr, "Kernel panic - not syncing: Attempted to kill init!")
	case "hang":
		fmt.Println(scenario.HeartbeatLine("boot", 30, 4, "[  1.0] Booting"))
		// Wait to be killed. A signal channel (not a bare select{}) keeps
		// the runtime from declaring a deadlock and exiting.
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM)
		<-stop
	}
	return 0
}

func fakeMachine(t *testing.T, mode string) Machine {
	t.Setenv(fakeEnv, mode)
	return Machine{QEMU: os.Args[0], Kernel: "k", Initrd: "i", Timeout: time.Minute}
}

func TestMachineRunDone(t *testing.T) {
	var raw strings.Builder
	var kinds []scenario.Kind
	m := fakeMachine(t, "done")
	m.Console = &raw
	m.OnEvent = func(ev scenario.Event) { kinds = append(kinds, ev.Kind) }
	out, err := m.Run(context.Background())
	require.NoError(t, err)
	require.True(t, out.KVMReady)
	require.True(t, out.Done)
	require.Equal(t, 1, out.Pass)
	require.Len(t, out.ResultsFor("boot"), 1)
	require.Equal(t, 20.0, out.ResultsFor("boot")[0].FirstLineS)
	require.Contains(t, raw.String(), "SeaBIOS")
	require.Equal(t, []scenario.Kind{scenario.KindKVMReady, scenario.KindResult, scenario.KindDone}, kinds)
}

func TestMachineRunIncomplete(t *testing.T) {
	out, err := fakeMachine(t, "crash").Run(context.Background())
	require.ErrorIs(t, err, ErrIncomplete)
	require.Contains(t, err.Error(), "Attempted to kill init")
	require.Len(t, out.Results, 1)
}

func TestMachineRunTimeout(t *testing.T) {
	m := fakeMachine(t, "hang")
	m.Timeout = time.Second
	start := time.Now()
	out, err := m.Run(context.Background())
	require.ErrorIs(t, err, ErrOuterTimeout)
	require.Less(t, time.Since(start), 30*time.Second)
	require.True(t, out.KVMReady)
}

func TestMachineRunSilent(t *testing.T) {
	m := fakeMachine(t, "hang")
	m.IdleTimeout = 500 * time.Millisecond
	out, err := m.Run(context.Background())
	require.ErrorIs(t, err, ErrOuterSilent)
	require.Contains(t, err.Error(), `last heartbeat: boot at 30s, 4 console lines, last "[  1.0] Booting"`)
	require.Equal(t, 4, out.LastHeartbeat.Lines)
}

func TestLockHost(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockHost(context.Background(), dir, func(string) { t.Fatal("first lock waited") })
	require.NoError(t, err)
	// A second holder waits; with its context ended it gives up.
	ctx, cancel := context.WithCancel(context.Background())
	waited := false
	_, err = lockHost(ctx, dir, func(string) { waited = true; cancel() })
	require.ErrorIs(t, err, context.Canceled)
	require.True(t, waited)
	unlock()
	// The abandoned waiter takes and drops the lock in the background; a
	// new holder gets it, after waiting for that if need be.
	unlock2, err := lockHost(context.Background(), dir, func(string) {})
	require.NoError(t, err)
	unlock2()
}

func TestMachineArgs(t *testing.T) {
	args := strings.Join(Machine{Kernel: "/k", Initrd: "/i"}.Args(), " ")
	require.Equal(t, "-accel tcg -cpu max -m 3072 -smp 1 -nographic -no-reboot -nic none -kernel /k -initrd /i -append console=ttyS0 quiet panic=-1 printk.devkmsg=on nohz=off highres=off lapic=notscdeadline", args)
}

func TestOutcomeAdd(t *testing.T) {
	o := NewOutcome()
	for _, l := range []string{
		"[    1.0] random noise",
		scenario.KVMFailedLine("finit_module kvm_amd.ko: no such device") + "\r",
		scenario.ErrorLine("bad list"),
		scenario.LogLine("panic", "[  1.000] Kernel panic"),
		scenario.ConsoleLine("demo", "VMM-AGENT: start"),
		"E2E: nonsense",
	} {
		o.Add(l)
	}
	require.Equal(t, "finit_module kvm_amd.ko: no such device", o.KVMFailed)
	require.Equal(t, []string{"bad list"}, o.Errors)
	require.Equal(t, []string{"[  1.000] Kernel panic"}, o.Logs["panic"])
	require.Equal(t, []string{"VMM-AGENT: start"}, o.Console["demo"])
	require.Equal(t, []string{"E2E: nonsense"}, o.Malformed)
	require.Contains(t, o.Summary(), "KVM failed")
	require.False(t, o.Done)

	for i := range tailLines + 10 {
		o.Add(fmt.Sprintf("line %d", i))
	}
	require.Len(t, o.Tail, tailLines)
	require.Equal(t, fmt.Sprintf("line %d", tailLines+9), o.Tail[tailLines-1])
}

func FuzzOutcomeAdd(f *testing.F) {
	f.Add("E2E: done pass=1 fail=2\nE2E-LOG a: x\nE2E: kvm ready")
	f.Add("E2E: scenario=a result=pass exit=0 want_exit=0 first_line_s=1 mark_s=-1 total_s=1 run=1 runner=vmm reason=\"\"")
	f.Fuzz(func(t *testing.T, text string) {
		o := NewOutcome()
		require.NoError(t, o.Read(strings.NewReader(text), nil))
		_ = o.Summary()
		if len(o.Tail) > tailLines {
			t.Fatalf("tail of %d lines", len(o.Tail))
		}
	})
}

func TestGuestArgs(t *testing.T) {
	g := Guest{CPUs: 2, ExpectCPUs: 2, Action: "hang", Quiet: true, Timeout: 40 * time.Second}
	require.Equal(t, "console=ttyS0 quiet pci=noearly panic=-1 vmm.checks=boot,cpus,clocksource vmm.action=hang vmm.expect_cpus=2", g.Cmdline())
	args, err := g.Args(scenario.RunnerVMM)
	require.NoError(t, err)
	require.Equal(t, []string{"run", "--kernel", "/guest/vmlinuz", "--initrd", "/guest/guest.cpio.gz",
		"--cmdline", g.Cmdline(), "--cpus", "2", "--memory", "256M", "--console", "stdio", "--timeout", "40s"}, args)

	args, err = Guest{}.Args(scenario.RunnerQEMU)
	require.NoError(t, err)
	joined := strings.Join(args, " ")
	require.Contains(t, joined, "-M microvm -enable-kvm -cpu host -m 256 -smp 1")
	require.Contains(t, joined, "-append console=ttyS0 pci=noearly panic=-1 vmm.checks=boot,cpus,clocksource vmm.action=poweroff -no-reboot")
	require.Contains(t, joined, "isa-debug-exit,iobase=0xf4")

	_, err = Guest{}.Args("bochs")
	require.ErrorIs(t, err, scenario.ErrInvalid)

	// PVH: the unpacked kernel for both runners, the rest unchanged.
	for _, runner := range []string{scenario.RunnerVMM, scenario.RunnerQEMU} {
		bz, err := Guest{}.Args(runner)
		require.NoError(t, err)
		pvh, err := Guest{PVH: true}.Args(runner)
		require.NoError(t, err)
		i := slices.Index(bz, images.OuterGuestKernel)
		require.Positive(t, i, runner)
		require.Equal(t, images.OuterGuestVmlinux, pvh[i], runner)
		pvh[i] = images.OuterGuestKernel
		require.Equal(t, bz, pvh, runner)
	}
	require.True(t, usesPath([]scenario.Scenario{{Name: "pvh", Args: mustArgs(t, Guest{PVH: true})}}, images.OuterGuestVmlinux))
	require.False(t, usesPath([]scenario.Scenario{{Name: "bz", Args: mustArgs(t, Guest{})}}, images.OuterGuestVmlinux))
}

func mustArgs(t *testing.T, g Guest) []string {
	t.Helper()
	args, err := g.Args(scenario.RunnerVMM)
	require.NoError(t, err)
	return args
}

func TestSuiteTimeoutAndNeeds(t *testing.T) {
	s := Suite{Scenarios: []scenario.Scenario{
		{Name: "a", Args: []string{"x"}, Timeout: "60s", Repeat: 2},
		{Name: "b", Runner: scenario.RunnerQEMU, Args: []string{"x"}, Timeout: "30s"},
	}}
	d, err := s.Timeout()
	require.NoError(t, err)
	require.Equal(t, outerBootBudget+60*time.Second*2+30*time.Second+3*10*time.Second, d)
	// A parallel scenario's runs go together: its timeout counts once.
	s.Scenarios[0].Parallel = true
	d, err = s.Timeout()
	require.NoError(t, err)
	require.Equal(t, outerBootBudget+60*time.Second+30*time.Second+2*10*time.Second, d)
	vmm, qemu := s.needs()
	require.True(t, vmm)
	require.True(t, qemu)
}

func TestSuiteStreamAll(t *testing.T) {
	s := Suite{Scenarios: []scenario.Scenario{{Name: "a", Args: []string{"x"}}}}
	require.False(t, s.list()[0].Stream)
	s.StreamAll = true
	require.True(t, s.list()[0].Stream)
	require.False(t, s.Scenarios[0].Stream, "the caller's list is not modified")
}

func TestOuterQEMUChoice(t *testing.T) {
	ctx := context.Background()
	debian, err := FindQEMU(ctx, images.Config{}, false)
	if err != nil {
		testenv.Skip(t, "Debian's qemu-system-x86 is not installed: %v", err)
	}
	t.Setenv(EnvOuterQEMU, OuterQEMUDebian)
	got, err := OuterQEMU(ctx, images.Config{}, false)
	require.NoError(t, err)
	require.Equal(t, debian, got)

	t.Setenv(EnvOuterQEMU, os.Args[0])
	got, err = OuterQEMU(ctx, images.Config{}, false)
	require.NoError(t, err)
	require.Equal(t, os.Args[0], got, "an absolute path is used as is")

	t.Setenv(EnvOuterQEMU, "/nonexistent/qemu")
	_, err = OuterQEMU(ctx, images.Config{}, false)
	require.ErrorContains(t, err, EnvOuterQEMU)

	t.Setenv(EnvOuterQEMU, "newest")
	_, err = OuterQEMU(ctx, images.Config{}, false)
	require.ErrorContains(t, err, `"newest"`)
}

func TestImageShare(t *testing.T) {
	debian := scenario.Scenario{Name: "d", Args: []string{"run", "--disk", images.OuterDebianDisk + ",snapshot,if=nvme"}}
	other := scenario.Scenario{Name: "o", Args: []string{"run", "--disk", "/tmp/x.img"}}
	require.True(t, needsImageShare([]scenario.Scenario{other, debian}))
	require.False(t, needsImageShare([]scenario.Scenario{other}))
	require.Equal(t, []string{"-virtfs", "local,path=/c,,d/vmm,mount_tag=" + scenario.ImagesTag + ",security_model=none,readonly=on"},
		ImageShareDevices("/c,d/vmm"))
}

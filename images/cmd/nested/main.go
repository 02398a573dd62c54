// Command nested runs one inner guest boot inside the nested test host, for
// hosts whose /dev/kvm cannot boot Linux: it builds what is missing, boots the
// outer machine under QEMU/TCG with the single scenario "demo", streams the
// inner guest's console to stdout and exits with the inner VMM's exit code.
//
//	go run ./images/cmd/nested [flags] [-- extra `vmm run` arguments]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

const demo = "demo"

// options are the command line.
type options struct {
	out, runner, checks, action, cmdline, consoleLog string
	cpus, memory, expectCPUs, outerCPUs              int
	timeout                                          time.Duration
	quiet, install, verbose                          bool
	rng, virtioConsole                               bool
	extra                                            []string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("nested", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "out", "", "artifact directory (default build/images at the module root)")
	fs.StringVar(&o.runner, "runner", scenario.RunnerVMM, "inner VMM: vmm or qemu (QEMU -M microvm, for comparison)")
	fs.IntVar(&o.cpus, "cpus", 1, "guest vCPUs")
	fs.IntVar(&o.memory, "memory", 256, "guest memory in MiB")
	fs.StringVar(&o.checks, "checks", strings.Join(testhost.DefaultChecks(), ","), "guest agent checks (vmm.checks)")
	fs.StringVar(&o.action, "action", "poweroff", "what the agent does after its checks: poweroff, reboot, panic or hang")
	fs.IntVar(&o.expectCPUs, "expect-cpus", 0, "vmm.expect_cpus for the cpus check (0: not set)")
	fs.StringVar(&o.cmdline, "cmdline", "", "extra guest kernel command line")
	fs.BoolVar(&o.quiet, "quiet", true, "boot the guest kernel with quiet (-quiet=false for the full kernel log: it makes the nested host slow and has stalled it)")
	fs.BoolVar(&o.rng, "rng", false, "give the guest vmm's virtio-rng")
	fs.BoolVar(&o.virtioConsole, "virtio-console", false, "make hvc0 (virtio-console) the guest console")
	fs.DurationVar(&o.timeout, "timeout", 150*time.Second, "guest boot limit (vmm --timeout; for qemu, the kill deadline)")
	fs.StringVar(&o.consoleLog, "console-log", "", "also write the outer machine's whole console to this file")
	fs.BoolVar(&o.install, "install", os.Geteuid() == 0, "apt-get install qemu-system-x86, and the outer QEMU's build dependencies, when missing")
	fs.BoolVar(&o.verbose, "v", false, "log the image builds")
	fs.IntVar(&o.outerCPUs, "outer-cpus", 1, "vCPUs of the outer (TCG) machine")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.extra = fs.Args()
	if o.runner == scenario.RunnerQEMU && len(o.extra) > 0 {
		return o, fmt.Errorf("extra arguments %q are for vmm, not -runner qemu", o.extra)
	}
	if o.timeout <= 0 {
		return o, errors.New("-timeout must be positive")
	}
	return o, nil
}

// scenario turns the options into the one scenario the outer machine runs.
func (o options) scenario() (scenario.Scenario, error) {
	g := testhost.Guest{
		CPUs: o.cpus, MemoryMiB: o.memory, Checks: strings.Split(o.checks, ","), Action: o.action,
		ExpectCPUs: o.expectCPUs, Quiet: o.quiet, ExtraCmdline: o.cmdline,
		RNG: o.rng, VirtioConsole: o.virtioConsole,
	}
	kill := o.timeout
	if o.runner != scenario.RunnerQEMU {
		g.Timeout = o.timeout
		kill += 60 * time.Second // let vmm end it and say so
	}
	args, err := g.Args(o.runner)
	if err != nil {
		return scenario.Scenario{}, err
	}
	s := scenario.Scenario{Name: demo, Runner: o.runner, Args: append(args, o.extra...), Timeout: kill.String(), Stream: true}
	return s, s.Validate()
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	s, err := o.scenario()
	if err != nil {
		fmt.Fprintf(stderr, "nested: %v\n", err)
		return 2
	}
	env, err := testhost.NewCommandEnv(o.out, o.verbose, o.consoleLog, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "nested: %v\n", err)
		return 1
	}
	defer env.Close()
	cfg, ctx, console := env.Config, env.Ctx, env.Console
	suite := testhost.Suite{
		Config: cfg, Scenarios: []scenario.Scenario{s}, InstallQEMU: o.install, Console: console, OuterCPUs: o.outerCPUs,
		OnEvent: func(ev scenario.Event) {
			if ev.Kind == scenario.KindConsole && ev.Name == demo {
				fmt.Fprintln(stdout, ev.Text)
			}
		},
	}
	fmt.Fprintf(stderr, "nested: building what is missing, then booting the outer machine under TCG (slow: minutes) and %s inside it\n", s.RunnerName())
	out, runErr := suite.Run(ctx)
	if out == nil {
		fmt.Fprintf(stderr, "nested: preparing the nested test host: %v\n", runErr)
		return 1
	}
	return exitCode(out, runErr, stderr)
}

// exitCode is the inner VMM's exit code, or 1 when the outer machine did
// not get to report it.
func exitCode(out *testhost.Outcome, runErr error, stderr io.Writer) int {
	var rs []scenario.Result
	if out != nil {
		rs = out.ResultsFor(demo)
	}
	if len(rs) == 0 {
		fmt.Fprintf(stderr, "nested: the inner VMM did not report: %v\n", runErr)
		return 1
	}
	r := rs[0]
	if runErr != nil {
		fmt.Fprintf(stderr, "nested: outer machine after the run: %v\n", runErr)
	}
	fmt.Fprintf(stderr, "nested: %s exited %d after %.1fs (agent first line at %.1fs)\n", r.Runner, r.Exit, r.TotalS, r.FirstLineS)
	if r.Exit == scenario.ExitNone {
		fmt.Fprintf(stderr, "nested: %s\n", r.Reason)
		return 1
	}
	return r.Exit
}

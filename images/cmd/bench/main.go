// Command bench compares guest boot times of vmm and QEMU (-M microvm) inside
// one boot of the nested test host: the same kernel and initramfs, runs
// alternating between the two, timed from runner start to the guest agent's
// first line ("VMM-AGENT: start"). It prints every run, the medians and
// the ratio vmm/QEMU. Times two levels down are only comparable within one
// outer boot, which is why both runners share it.
//
//	go run ./images/cmd/bench [-n 5] [-json FILE]
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

type options struct {
	out, jsonPath, consoleLog string
	runners                   []string
	n, cpus, memory           int
	timeout                   time.Duration
	install, verbose          bool
	boot                      bool     // the boot-time scenarios (main.go)
	io                        bool     // also the I/O scenarios (io.go)
	ioIfaces                  []string // the disk interfaces -io measures
	ioReport                  bool     // vmm's I/O runs write --report; the summary counts their exits (io.go)
	hyperv                    bool     // also the Hyper-V clock scenarios (hyperv.go)
	firmware                  bool     // also the SeaBIOS/GRUB boot scenarios (firmware.go)
	uefi                      bool     // also the OVMF/GRUB boot scenarios (uefi.go)
	footprint                 bool     // also the memory scenarios (memory.go)
	exits                     bool     // also the exit round trips (exits.go)
	cloudInit                 bool     // also the Debian image to cloud-init's final message (cloudinit.go)
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var runners, ioIfaces string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "out", "", "artifact directory (default build/images at the module root)")
	fs.IntVar(&o.n, "n", 5, "boots per runner")
	fs.StringVar(&runners, "runners", "vmm,qemu", "runners to compare, in alternation order")
	fs.IntVar(&o.cpus, "cpus", 1, "guest vCPUs")
	fs.IntVar(&o.memory, "memory", 256, "guest memory in MiB")
	fs.DurationVar(&o.timeout, "timeout", 150*time.Second, "limit for one guest boot")
	fs.StringVar(&o.jsonPath, "json", "", "also write the runs and medians as JSON to this file")
	fs.StringVar(&o.consoleLog, "console-log", "", "write the outer machine's whole console to this file")
	fs.BoolVar(&o.install, "install", os.Geteuid() == 0, "apt-get install qemu-system-x86, and the outer QEMU's build dependencies, when missing")
	fs.BoolVar(&o.verbose, "v", false, "log the image builds")
	fs.BoolVar(&o.io, "io", false, "also measure disk I/O (virtio-blk, NVMe and AHCI, against QEMU's on microvm and q35; vmm's storvsc against its virtio-blk) and virtio-net TCP in the same outer boot")
	fs.StringVar(&ioIfaces, "io-if", strings.Join(ioInterfaces, ","), "the disk interfaces -io measures (a subset of the default, for a shorter run)")
	fs.BoolVar(&o.ioReport, "io-report", false, "with -io, have vmm's runs write --report and print the medians of their exits, synthetic MSR accesses, hypercalls and VMBus signals per interface")
	fs.BoolVar(&o.hyperv, "hyperv", false, "also measure guest clock reads with Hyper-V enlightenments (TSC page, MSR) against QEMU's hv-* flags")
	fs.BoolVar(&o.firmware, "firmware", false, "also time SeaBIOS -> GRUB -> Linux from a virtio-blk disk against QEMU -M pc")
	fs.BoolVar(&o.uefi, "uefi", false, "also time OVMF -> GRUB -> Linux from a virtio-blk disk against QEMU -M pc with the same OVMF")
	fs.BoolVar(&o.footprint, "footprint", false, "also measure memory beyond guest RAM against QEMU, and the guest RAM vmm keeps after the guest frees 128 MiB with and without --balloon")
	fs.BoolVar(&o.boot, "boot", true, "time Linux boots to the agent (-boot=false: only the other measures asked for)")
	fs.BoolVar(&o.exits, "exits", false, "also time exit round trips (CPUID, PM timer, MMIO, IPI) and Hyper-V synthetic timers in a tiny multiboot guest against QEMU -M pc")
	fs.BoolVar(&o.cloudInit, "cloudinit", false, "also time the Debian image (qcow2, snapshot mode, SeaBIOS) from start to cloud-init's final message with the same NoCloud seed against QEMU -M pc")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.n < 1 {
		return o, errors.New("-n must be at least 1")
	}
	if o.timeout <= 0 {
		return o, errors.New("-timeout must be positive")
	}
	o.runners = strings.Split(runners, ",")
	o.ioIfaces = strings.Split(ioIfaces, ",")
	for _, f := range o.ioIfaces {
		if !slices.Contains(ioInterfaces, f) {
			return o, fmt.Errorf("-io-if: unknown interface %q (want some of %s)", f, strings.Join(ioInterfaces, ","))
		}
	}
	return o, nil
}

// scenarioName is the bench scenario of a runner.
func scenarioName(runner string) string { return "bench-" + runner }

// scenarios are one bench scenario per runner, repeated n times; the outer
// init interleaves bench scenarios round-robin. The guest boots quiet and
// runs only the boot check: the measure is time to userspace.
func (o options) scenarios() ([]scenario.Scenario, error) {
	var list []scenario.Scenario
	for _, runner := range o.runners {
		if !o.boot {
			break
		}
		args, kill, err := o.bootGuest(runner)
		if err != nil {
			return nil, err
		}
		list = append(list, scenario.Scenario{
			Name: scenarioName(runner), Runner: runner, Args: args, Repeat: o.n, Bench: true,
			WantChecks: map[string]string{"boot": scenario.Pass}, Timeout: kill.String(),
		})
	}
	if o.io {
		more, err := o.ioScenarios()
		if err != nil {
			return nil, err
		}
		list = append(list, more...)
	}
	if o.hyperv {
		more, err := o.hypervScenarios()
		if err != nil {
			return nil, err
		}
		list = append(list, more...)
	}
	if o.firmware {
		more, err := o.firmwareScenarios()
		if err != nil {
			return nil, err
		}
		list = append(list, more...)
	}
	if o.uefi {
		more, err := o.uefiScenarios()
		if err != nil {
			return nil, err
		}
		list = append(list, more...)
	}
	if o.footprint {
		more, err := o.memoryScenarios()
		if err != nil {
			return nil, err
		}
		list = append(list, more...)
	}
	if o.exits {
		more, err := o.exitScenarios()
		if err != nil {
			return nil, err
		}
		list = append(list, more...)
	}
	if o.cloudInit {
		more, err := o.cloudInitScenarios()
		if err != nil {
			return nil, err
		}
		list = append(list, more...)
	}
	if _, err := scenario.Encode(list); err != nil {
		return nil, err
	}
	return list, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	list, err := o.scenarios()
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	env, err := testhost.NewCommandEnv(o.out, o.verbose, o.consoleLog, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	defer env.Close()
	cfg, ctx, console := env.Config, env.Ctx, env.Console
	suite := testhost.Suite{
		Config: cfg, Scenarios: list, InstallQEMU: o.install, Console: console,
		OnEvent: func(ev scenario.Event) {
			if ev.Kind == scenario.KindResult {
				fmt.Fprintf(stderr, "bench: %s\n", ev.Result.Line())
			}
		},
	}
	fmt.Fprintf(stderr, "bench: building what is missing, then booting the outer machine under TCG for %d guest boots\n", len(scenario.Schedule(list)))
	out, runErr := suite.Run(ctx)
	if out == nil {
		fmt.Fprintf(stderr, "bench: preparing the nested test host: %v\n", runErr)
		return 1
	}
	rep := summarize(o.runners, out.Results)
	if o.boot {
		rep.write(stdout)
	}
	if o.io {
		io := summarizeIO(o.runners, out.Console)
		io.write(stdout)
		rep.IO = &io
	}
	if o.hyperv {
		hv := summarizeHyperV(o.runners, out.Console)
		hv.write(stdout)
		rep.HyperV = &hv
	}
	if o.firmware {
		fw := summarizeFirmware(o.runners, out.Results)
		fw.write(stdout)
		rep.Firmware = &fw
	}
	if o.uefi {
		u := summarizeUEFI(o.runners, out.Results)
		u.write(stdout)
		rep.UEFI = &u
	}
	if o.footprint {
		m := summarizeMemory(o.runners, out.Console)
		m.write(stdout)
		rep.Memory = &m
	}
	if o.exits {
		ex := summarizeExits(o.runners, out.Results, out.Console)
		ex.write(stdout)
		rep.Exits = &ex
	}
	if o.cloudInit {
		ci := summarizeCloudInit(o.runners, out.Results, out.Console)
		ci.write(stdout)
		rep.CloudInit = &ci
	}
	if o.jsonPath != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(o.jsonPath, append(data, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintf(stderr, "bench: writing %s: %v\n", o.jsonPath, err)
			return 1
		}
	}
	code := 0
	if runErr != nil {
		fmt.Fprintf(stderr, "bench: outer machine: %v\n", runErr)
		code = 1
	}
	logged := map[string]bool{}
	for _, r := range out.Results {
		if r.Pass {
			continue
		}
		code = 1
		fmt.Fprintf(stderr, "bench: %s run %d failed: %s\n", r.Name, r.Run, r.Reason)
		if !logged[r.Name] {
			logged[r.Name] = true
			fmt.Fprintf(stderr, "%s\n", strings.Join(out.Logs[r.Name], "\n"))
		}
	}
	return code
}

// bootGuest is the Linux guest that boots to the agent's "boot" check under
// runner, and how long the outer init gives it (vmm's own --timeout comes
// first, so that its report says why).
func (o options) bootGuest(runner string) (args []string, kill time.Duration, err error) {
	g := testhost.Guest{CPUs: o.cpus, MemoryMiB: o.memory, Checks: []string{"boot"}, Quiet: true}
	kill = o.timeout
	if runner == scenario.RunnerVMM {
		g.Timeout = o.timeout
		kill += 30 * time.Second
	}
	args, err = g.Args(runner)
	return args, kill, err
}

// Command vmm runs KVM virtual machines: `vmm run` boots a guest, `vmm probe`
// reports what this host's KVM offers, `vmm test` runs a suite of cases. This file is flag parsing and exit
// codes only; the machine lives in package vmm.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmmdev/vmm/vmm"
	"github.com/vmmdev/vmm/vmm/console"
)

const usage = `usage: vmm <command> [flags]

commands:
  run     boot a guest (vmm run -h for flags)
  probe   report what this host's KVM offers (--json for machine-readable output)
  test    run a suite of guests and configurations (vmm test -h for flags and exit codes)
  image   inspect and create disk images: vmm image info PATH, vmm image create [--backing BASE] PATH SIZE

exit codes of vmm run:
  0 guest powered off, or --expect matched   1 VMM error   2 usage error
  3 guest panic (or halted for good)   4 timeout   5 guest reset or triple fault
  6 --fail matched   8 --firmware found no bootable device
  10 --heartbeat-timeout: the guest's VMBus heartbeat stopped
  2k+1 guest wrote k to the debug-exit port 0xf4
  130 interrupted by SIGINT/SIGTERM (a second signal exits at once; with --vmbus a guest
      with the shutdown channel open is asked to power off first: 0 if it does)
`

func main() {
	if len(os.Args) > 1 && os.Args[1] == "run" {
		heapWithoutTHP(os.Getenv, os.ReadFile, syscall.Exec, os.Args, os.Environ())
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return vmm.ExitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdin, stdout, stderr)
	case "probe":
		return cmdProbe(args[1:], stdout, stderr)
	case "test":
		return cmdTest(args[1:], stdout, stderr)
	case "image":
		return cmdImage(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "vmm: unknown command %q\n%s", args[0], usage)
	return vmm.ExitUsage
}

// runFlags are the flags of `vmm run`.
type runFlags struct {
	kernel, initrd, cmdline string
	firmware, acpi          string
	cpus                    int
	memory                  string
	console                 string
	timeout                 time.Duration
	logLevel                string
	kvmDevice               string
}

// runCmd is `vmm run`'s flag set and what its flags parse into.
type runCmd struct {
	fs   *flag.FlagSet
	f    runFlags
	devs *deviceFlags
	ci   *ciFlags
	vf   *virtioFlags
	hv   *hypervFlags
	cpu  *cpuFlag
}

func newRunCmd() *runCmd {
	fs := flag.NewFlagSet("vmm run", flag.ContinueOnError)
	r := &runCmd{fs: fs}
	f := &r.f
	fs.StringVar(&f.kernel, "kernel", "", "guest kernel: bzImage, PVH ELF (vmlinux) or multiboot ELF (required unless --firmware)")
	fs.StringVar(&f.firmware, "firmware", "", "boot through firmware instead of --kernel: a BIOS image, seabios for "+vmm.SeaBIOSPath+
		", or ovmf[,code=PATH][,vars=PATH][,secure-boot] for Debian's UEFI "+vmm.OVMFCodePath+" (code=PATH: another image in its place, "+
		"e.g. a debug build) with a fresh copy of the variable store, "+
		"or PATH as the store kept across runs (created from the template), secure-boot: Microsoft's keys enrolled "+
		"(exit code 8 when it finds no bootable device)")
	fs.StringVar(&f.initrd, "initrd", "", "initial ramdisk (multiboot: the first module)")
	fs.StringVar(&f.acpi, "acpi", vmm.ACPIPC, "direct boot's ACPI: pc (PM block and timer, FACS, 8259 and PIT, as QEMU's pc) or reduced (hardware-reduced)")
	fs.StringVar(&f.cmdline, "cmdline", "console=ttyS0", "kernel command line")
	fs.IntVar(&f.cpus, "cpus", vmm.DefaultCPUs, "number of vCPUs")
	fs.StringVar(&f.memory, "memory", "512M", "guest RAM: a number of MiB, or with a K, M, G or T suffix")
	fs.StringVar(&f.console, "console", "stdio", "guest console: stdio, file:PATH or none (the UART), or virtio[:DEST] (hvc0)")
	fs.DurationVar(&f.timeout, "timeout", 0, "stop the guest with exit code 4 after this long (e.g. 60s); 0 for none")
	fs.StringVar(&f.logLevel, "log-level", "warn", "VMM log level on stderr: debug, info, warn or error")
	fs.StringVar(&f.kvmDevice, "kvm-device", "/dev/kvm", "KVM device node")
	r.devs = registerDeviceFlags(fs)
	r.ci = registerCIFlags(fs)
	r.vf = registerVirtioFlags(fs)
	r.hv = registerHyperVFlags(fs)
	r.cpu = registerCPUFlag(fs)
	return r
}

// prepare parses and validates a `vmm run` command line into a Config, as
// far as that goes without opening anything but --config; a problem is one
// line on stderr and an exit code. vmm test checks suites with it too, so a
// suite is refused exactly where vmm run would refuse the case.
func (r *runCmd) prepare(args []string, stderr io.Writer) (vmm.Config, *slog.Logger, int) {
	fs, f := r.fs, &r.f
	if code := parseOneLine(fs, args, stderr); code != ok {
		return vmm.Config{}, nil, code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vmm run: unexpected argument %q\n", fs.Arg(0))
		return vmm.Config{}, nil, vmm.ExitUsage
	}
	if code := r.ci.loadConfig(fs, stderr); code != ok {
		return vmm.Config{}, nil, code
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		fmt.Fprintf(stderr, "vmm run: --log-level: %q is not one of debug, info, warn, error\n", f.logLevel)
		return vmm.Config{}, nil, vmm.ExitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	mem, err := parseSize(f.memory)
	if err != nil {
		fmt.Fprintf(stderr, "vmm run: --memory: %v\n", err)
		return vmm.Config{}, nil, vmm.ExitUsage
	}
	cfg := vmm.Config{
		Kernel: f.kernel, Initrd: f.initrd, Cmdline: f.cmdline, Firmware: f.firmware, ACPI: f.acpi,
		CPUs: f.cpus, Memory: mem, Timeout: f.timeout, DevKVM: f.kvmDevice,
	}
	r.devs.apply(&cfg)
	f.console = r.vf.apply(&cfg, f.console)
	if code := r.hv.apply(&cfg, stderr); code != ok {
		return vmm.Config{}, nil, code
	}
	if code := r.cpu.apply(&cfg, stderr); code != ok {
		return vmm.Config{}, nil, code
	}
	if code := r.ci.configure(&cfg, f.console, stderr); code != ok {
		return vmm.Config{}, nil, code
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "vmm run: %v\n", err)
		return vmm.Config{}, nil, vmm.ExitError
	}
	return cfg, log, ok
}

func cmdRun(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	tuneRuntime(os.Getenv)
	r := newRunCmd()
	r.fs.SetOutput(stderr)
	cfg, log, code := r.prepare(args, stderr)
	if code != ok {
		return code
	}
	f, ci, hv := &r.f, r.ci, r.hv
	con, err := console.Open(f.console, stdin, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "vmm run: --console: %v\n", err)
		return vmm.ExitError
	}
	defer con.Close()
	cfg.ConsoleOut, cfg.ConsoleIn = con.Out(), con.In()
	if code := ci.openOutputs(&cfg, stderr); code != ok {
		return code
	}
	defer ci.close()
	if code := hv.open(&cfg, stderr); code != ok {
		return code
	}
	defer hv.close()
	ctx, stopSignals := handleSignals(func() { con.Close() }, stderr)
	defer stopSignals()

	// Only after Validate bounded the vCPU count.
	reserveProcs(cfg.CPUs)
	m, err := vmm.New(cfg, log)
	if err != nil {
		con.Close()
		fmt.Fprintf(stderr, "vmm run: %v\n", err)
		return ci.writeReport(vmm.Result{Reason: vmm.StopReason{Kind: vmm.StopError, Source: "vmm", Err: err}}, vmm.ExitError, stderr)
	}
	defer m.Close()
	stopWake := wakeOnSignal(m, log)
	defer stopWake()
	if code := ci.lockDown(stderr); code != ok {
		return code
	}

	res := m.Run(ctx)
	con.Close()
	code = res.Reason.ExitCode()
	log.Info("guest stopped", "reason", res.Reason.String(), "exit_code", code, "wall", res.Wall,
		"first_output", res.FirstOutput, "exits", res.Exits,
		"unclaimed_pio", res.UnclaimedPIO, "unclaimed_mmio", res.UnclaimedMMIO)
	if res.Reason.Kind == vmm.StopError {
		fmt.Fprintf(stderr, "vmm run: %s\n", res.Reason)
	}
	return ci.writeReport(res, code, stderr)
}

// parseSize reads a memory size: a plain number is MiB (as QEMU's -m);
// K, M, G and T suffixes (optionally followed by "iB" or "B") are binary units.
func parseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "iB"), "B")
	mult := uint64(1 << 20)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mult, t = 1<<10, t[:n-1]
		case 'm', 'M':
			mult, t = 1<<20, t[:n-1]
		case 'g', 'G':
			mult, t = 1<<30, t[:n-1]
		case 't', 'T':
			mult, t = 1<<40, t[:n-1]
		}
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (examples: 512, 512M, 2G)", s)
	}
	if n > (1<<64-1)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

func cmdProbe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vmm probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	dev := fs.String("device", "/dev/kvm", "KVM device node")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return vmm.ExitUsage
	}
	r := vmm.Probe(*dev)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(stderr, "vmm probe: %v\n", err)
			return vmm.ExitError
		}
	} else {
		printProbe(stdout, r)
	}
	if !r.Available {
		return vmm.ExitError
	}
	return 0
}

func printProbe(w io.Writer, r vmm.ProbeResult) {
	if !r.Available {
		// r.Error names the device, what is wrong with it and what to do.
		fmt.Fprintf(w, "KVM: %s\n", r.Error)
	} else {
		fmt.Fprintf(w, "KVM: %s, API version %d, up to %d vCPUs\n", r.Device, r.APIVersion, r.MaxVCPUs)
		hw := "no"
		if r.Virtualization == vmm.VirtHardware {
			hw = "yes"
		}
		fmt.Fprintf(w, "hardware virtualization: %s (%s)\n", hw, r.Virtualization)
	}
	fmt.Fprintf(w, "can boot a real kernel directly: %v\n", r.CanBootLinux)
	if r.Available {
		fmt.Fprintf(w, "supported CPUID leaves: %d, MSRs: %d\n", r.CPUIDLeaves, r.MSRs)
		names := make([]string, 0, len(r.Capabilities))
		for k := range r.Capabilities {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			fmt.Fprintf(w, "  %-24s %d\n", k, r.Capabilities[k])
		}
	}
	for _, m := range r.Missing {
		fmt.Fprintf(w, "missing (required): %s\n", m)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// Command startbench measures vmm's own start-up on the local /dev/kvm and
// its memory beyond guest RAM, next to QEMU (-M microvm) and gokvm running
// the same tiny guest in the same run. The guest's first instruction begins
// writing '!' to COM1; each run is timed from just before the VMM process is
// started to that byte arriving on the VMM's stdout, and to the process's
// exit. vmm's report also gives the time to its first guest exit and its
// memory beyond the guest RAM it has resident. It prints medians and the
// ratios against the targets (issue 6: start-up under 5 ms and at most a
// third of QEMU's; overhead memory under 10 MiB).
//
// Where this host's /dev/kvm is not hardware virtualization, make bench runs
// it in the nested test host through bin/kvmexec (go run -exec), after a
// -prepare run here has built gokvm, which needs the module proxy; the
// header line says where it ran.
//
//	go run ./images/cmd/startbench [-n 20] [-vmm bin/vmm] [-qemu PATH|none] [-gokvm PATH|auto|none] [-json FILE] [-prepare]
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/vmm"
)

// gokvmModule is the gokvm version the benchmark builds (its newest commit
// when this was written); a peer in benchmarks only.
const gokvmModule = "github.com/bobuhiro11/gokvm@v0.0.8-0.20231003020000-f53faca69d28"

// guestMiB is every runner's guest RAM; gokvm places its initrd at 240 MiB.
const guestMiB = 256

// Targets of issue 6.
const (
	targetStartup     = 5 * time.Millisecond
	targetQEMURatio   = 1.0 / 3
	targetOverheadMiB = 10
)

type options struct {
	n                int
	vmm, qemu, gokvm string
	jsonPath, work   string
	timeout          time.Duration
	prepare          bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("startbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.n, "n", 20, "measured runs per runner (after one warm-up run each)")
	fs.StringVar(&o.vmm, "vmm", "bin/vmm", "the vmm binary")
	fs.StringVar(&o.qemu, "qemu", "qemu-system-x86_64", `QEMU binary, or "none"`)
	fs.StringVar(&o.gokvm, "gokvm", "auto", `gokvm binary, "auto" (go install `+gokvmModule+` into the work directory) or "none"`)
	fs.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&o.work, "work", "", "work directory (default build/startbench under the module root)")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Second, "limit for one run")
	fs.BoolVar(&o.prepare, "prepare", false, "only build what a later run needs (gokvm) into the work directory")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.n < 1 || o.n > 10000 {
		return o, fmt.Errorf("-n %d: want 1..10000", o.n)
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("-timeout %v: want a positive duration", o.timeout)
	}
	return o, nil
}

// noopEnv makes the binary the "noop" baseline runner: print the byte, exit.
const noopEnv = "STARTBENCH_NOOP"

func main() {
	if os.Getenv(noopEnv) == "1" {
		_, _ = os.Stdout.Write([]byte{firstByte})
		os.Exit(0)
	}
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "startbench:", err)
		os.Exit(2)
	}
	if err := bench(o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "startbench:", err)
		os.Exit(1)
	}
}

// where says which KVM the figures come from.
func where() string {
	if os.Getenv(scenario.ExecInsideEnv) == "1" {
		return "in the nested test host (KVM on nested SVM under QEMU's software emulation: compare ratios, not times)"
	}
	return fmt.Sprintf("on this host's /dev/kvm (%s)", vmm.Probe("/dev/kvm").Virtualization)
}

func bench(o options, stdout, stderr io.Writer) error {
	if o.work == "" {
		root, err := images.ModuleRoot()
		if err != nil {
			return err
		}
		o.work = filepath.Join(root, "build", "startbench")
	}
	if err := os.MkdirAll(o.work, 0o755); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	if o.prepare {
		if o.gokvm == "none" {
			return nil
		}
		_, err := gokvmBinary(o)
		return err
	}
	// The guest and vmm's reports go to a scratch directory: the work
	// directory is read-only in the nested test host.
	scratch, err := os.MkdirTemp("", "startbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	runners, err := setupRunners(o, scratch, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "startbench: %d runs per runner after a warm-up, tiny guest, %d MiB RAM, %s\n", o.n, guestMiB, where())
	samples := make(map[string][]sample, len(runners))
	for i := 0; i <= o.n; i++ {
		// Round-robin, so the runners share the machine's state.
		for _, r := range runners {
			s, err := r.once(o.timeout)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", r.name, i, err)
			}
			if i > 0 {
				samples[r.name] = append(samples[r.name], s)
			}
		}
	}
	res := summarize(runners, samples)
	res.print(stdout)
	if o.jsonPath != "" {
		data, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return fmt.Errorf("encode results: %w", err)
		}
		if err := os.WriteFile(o.jsonPath, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", o.jsonPath, err)
		}
	}
	return nil
}

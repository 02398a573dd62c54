// Command outerqemu builds (once per machine, then reuses) the QEMU that
// boots the nested test host, and prints its path: Debian's
// qemu-system-x86_64 rebuilt from Debian's source with our fix for nested
// CR8 writes (images.PatchedQEMU). make test runs it before the tests, so
// that the build (minutes) happens outside any test's deadline.
//
//	go run ./images/cmd/outerqemu [-if-nested]
//
// With -if-nested it builds nothing where host KVM tests run on this host's
// KVM (hardware virtualization, or VMM_TEST_KVM=local), as kvmexec decides.
// testhost.EnvOuterQEMU (VMM_OUTER_QEMU=debian or a path) is honoured as
// every outer boot honours it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/testhost"
	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/vmm"
)

// buildTimeout bounds the whole command: sources, dependencies and the build.
const buildTimeout = 2 * time.Hour

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("outerqemu", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ifNested := fs.Bool("if-nested", false, "build only if host KVM tests will run in the nested test host (as bin/kvmexec decides)")
	install := fs.Bool("install", os.Geteuid() == 0, "apt-get install Debian's qemu-system-x86 and the build dependencies when missing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "outerqemu: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *ifNested {
		need, why, err := nestedNeeded()
		if err != nil {
			fmt.Fprintf(stderr, "outerqemu: %v\n", err)
			return 2
		}
		if !need {
			fmt.Fprintf(stdout, "outer QEMU: not needed (%s)\n", why)
			return 0
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	cfg := images.Config{Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	start := time.Now()
	path, err := testhost.OuterQEMU(ctx, cfg, *install)
	if err != nil {
		fmt.Fprintf(stderr, "outerqemu: %v\n", err)
		return 1
	}
	// Seconds when reused; the build's own time on a cache miss.
	fmt.Fprintf(stdout, "outer QEMU: %s (ready in %s)\n", path, time.Since(start).Round(100*time.Millisecond))
	return 0
}

// nestedNeeded says whether kvmexec will boot the nested test host, and why.
func nestedNeeded() (bool, string, error) {
	where, err := kvmtest.WhereFromEnv()
	if err != nil {
		return false, "", err
	}
	switch where {
	case kvmtest.Local:
		return false, kvmtest.EnvWhere + "=local", nil
	case kvmtest.Nested:
		return true, "", nil
	}
	if p := vmm.Probe(kvmtest.Path); p.CanBootLinux {
		return false, "this host's KVM is hardware virtualization", nil
	}
	return true, "", nil
}

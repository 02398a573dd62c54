// Command kvmexec runs go test binaries where KVM is: `go test -exec
// /abs/path/bin/kvmexec ./...` (make test does). Where this host's /dev/kvm
// is hardware virtualization, a binary simply runs here. Elsewhere (no
// /dev/kvm, or PVM) a test binary's host KVM tests, the top-level tests
// named kvmtest.TestPrefix..., run inside the nested test host, whose KVM
// is real, and the rest of the binary runs here; the two outputs become one,
// so go test (and go test -json) sees one run. A program that is not a test
// binary runs wholly in the nested host (make bench's start-up figure).
//
// kvmtest.EnvWhere ("local", "nested" or "auto") forces either way.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/vmm"
)

// Exit codes of kvmexec itself; a program's own status passes through.
const (
	exitFail  = 1 // a test failed, or the nested host could not say
	exitUsage = 2
)

// listTimeout bounds -test.list, which runs no test.
const listTimeout = 2 * time.Minute

// graceS is how long past the binary's own -test.timeout the nested host
// waits before it kills the binary: the binary's panic with every
// goroutine's stack is the better report.
const graceS = 60

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kvmexec PROGRAM [ARG...] (as go test -exec)")
		os.Exit(exitUsage)
	}
	where, err := kvmtest.WhereFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvmexec:", err)
		os.Exit(exitUsage)
	}
	if where == kvmtest.Auto {
		where = kvmtest.Nested
		// Real kernels (and so the nested host's guests) boot here.
		if vmm.Probe(kvmtest.Path).CanBootLinux {
			where = kvmtest.Local
		}
	}
	prog, args := os.Args[1], os.Args[2:]
	if where == kvmtest.Local {
		execLocal(prog, args)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, prog, args, os.Stdout))
}

// execLocal replaces kvmexec with the program, so its status, signals and
// output are the program's own.
func execLocal(prog string, args []string) {
	err := syscall.Exec(prog, append([]string{prog}, args...), os.Environ())
	fmt.Fprintf(os.Stderr, "kvmexec: exec %s: %v\n", prog, err)
	os.Exit(exitFail)
}

// run sends what needs KVM to the nested host and returns the exit code.
func run(ctx context.Context, prog string, args []string, stdout io.Writer) int {
	if !strings.HasSuffix(prog, ".test") {
		code, err := nested(ctx, prog, args, 0, stdout)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kvmexec: %s in the nested test host: %v\n", filepath.Base(prog), err)
			return exitFail
		}
		return code
	}
	ta := parseTestArgs(args)
	var tests []string
	if !ta.local {
		list, err := listTests(ctx, prog, ta.listArgs())
		if err != nil {
			fmt.Fprintf(stdout, "kvmexec: %s: %v\nFAIL\n", pkgName(), err)
			return exitFail
		}
		tests = kvmTests(list)
	}
	if len(tests) == 0 {
		execLocal(prog, args)
	}
	localArgs, err := ta.localArgs()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kvmexec: %v\n", err)
		return exitUsage
	}
	failed := false
	local := &holdBack{w: stdout}
	cmd := exec.CommandContext(ctx, prog, localArgs...)
	cmd.Stdout, cmd.Stderr = local, local
	if err := cmd.Run(); err != nil {
		failed = true
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			fmt.Fprintf(local, "kvmexec: %s: %v\n", pkgName(), err)
		}
	}
	if saidFail, err := local.close(); saidFail || err != nil {
		failed = true
	}

	remote := &holdBack{w: stdout}
	start := time.Now()
	code, err := nested(ctx, prog, ta.nestedArgs(tests), testTimeoutS(ta.rest), remote)
	record(tests, code, err, time.Since(start))
	if err != nil {
		fmt.Fprintf(remote, "kvmexec: %s: %s in the nested test host: %v\n", pkgName(), strings.Join(tests, ", "), err)
		failed = true
	} else if code != 0 {
		failed = true
	}
	if saidFail, err := remote.close(); saidFail || err != nil {
		failed = true
	}
	prefix := ""
	if json := testJSON(ta.rest); json {
		prefix = string(rune(marker))
	}
	if failed {
		fmt.Fprintf(stdout, "%sFAIL\n", prefix)
		return exitFail
	}
	fmt.Fprintf(stdout, "%sPASS\n", prefix)
	return 0
}

// EnvSummary names a file to which kvmexec appends one line per package
// whose host KVM tests ran in the nested host (make test prints the total).
const EnvSummary = "VMM_KVMEXEC_SUMMARY"

// record appends the package's nested run to the summary file, if asked.
// A summary that cannot be written is reported but fails no test.
func record(tests []string, code int, runErr error, took time.Duration) {
	path := os.Getenv(EnvSummary)
	if path == "" {
		return
	}
	status := fmt.Sprintf("exit=%d", code)
	if runErr != nil {
		status = "error"
	}
	line := fmt.Sprintf("%s tests=%d %s seconds=%.1f\n", pkgName(), len(tests), status, took.Seconds())
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err == nil {
		_, err = f.WriteString(line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kvmexec: summary %s: %v\n", path, err)
	}
}

// listTests runs the binary with -test.list, which runs no test.
func listTests(ctx context.Context, prog string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("listing tests: %w: %s", err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// nested runs prog with args in the nested test host, with this process's
// working directory and environment, and returns its exit status.
func nested(ctx context.Context, prog string, args []string, timeoutS float64, out io.Writer) (int, error) {
	abs, err := filepath.Abs(prog)
	if err != nil {
		return 0, err
	}
	dir, err := os.Getwd()
	if err != nil {
		return 0, err
	}
	job := scenario.Job{Args: append([]string{abs}, args...), Dir: dir, Env: nestedEnv(os.Environ()), TimeoutS: timeoutS}
	// Image builds log only their failures: this output is the test's.
	cfg := images.Config{Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	e := testhost.Exec{Config: cfg, Job: job, Output: out, InstallQEMU: os.Geteuid() == 0}
	return e.Run(ctx)
}

// nestedEnv is the environment inside the nested host: this one, with KVM
// local there and temporary files on the machine's own tmpfs.
func nestedEnv(env []string) []string {
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == kvmtest.EnvWhere || k == "TMPDIR" {
			continue
		}
		out = append(out, kv)
	}
	return append(out, kvmtest.EnvWhere+"="+string(kvmtest.Local), "TMPDIR=/tmp")
}

// testTimeoutS is the binary's -test.timeout plus a grace, or 0 for none.
func testTimeoutS(args []string) float64 {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "-test.timeout="); ok {
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				return d.Seconds() + graceS
			}
		}
	}
	return 0
}

// testJSON reports whether go test asked for test2json framing.
func testJSON(args []string) bool {
	for _, a := range args {
		if a == "-test.v=test2json" {
			return true
		}
	}
	return false
}

// pkgName names the package under test: go test runs the binary in its
// source directory.
func pkgName() string {
	dir, err := os.Getwd()
	if err != nil {
		return "this package"
	}
	if root, err := images.ModuleRoot(); err == nil {
		if rel, err := filepath.Rel(root, dir); err == nil {
			return strings.TrimSuffix(images.ModulePath+"/"+filepath.ToSlash(rel), "/.")
		}
	}
	return dir
}

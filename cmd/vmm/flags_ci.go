package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/vmmdev/vmm/internal/flagfile"
	"github.com/vmmdev/vmm/vmm"
	"github.com/vmmdev/vmm/vmm/seccomp"
)

// maxConfigFile bounds --config: the file is user input.
const maxConfigFile = 1 << 20

// ok is the "no exit code yet" result of the helpers below.
const ok = -1

// ciFlags are the flags of `vmm run` for CI (issue 6): console matching,
// the console log, the JSON report, a config file and the seccomp lockdown.
type ciFlags struct {
	expect, fail string
	consoleLog   string
	report       string
	config       string
	seccomp      bool

	logFile, reportFile *os.File
	started             time.Time // when cmdRun began, for the report
}

func registerCIFlags(fs *flag.FlagSet) *ciFlags {
	c := &ciFlags{started: time.Now()}
	fs.StringVar(&c.expect, "expect", "", "stop the guest and exit 0 as soon as a console line matches this regular expression (RE2)")
	fs.StringVar(&c.fail, "fail", "", "stop the guest and exit 6 as soon as a console line matches this regular expression (checked before --expect)")
	fs.StringVar(&c.consoleLog, "console-log", "", "also write the guest console to this file, unbuffered: complete even if vmm is killed")
	fs.StringVar(&c.report, "report", "", "write a JSON report of the run to this file (docs/report.md)")
	fs.StringVar(&c.config, "config", "", "read settings from this JSON file: keys are the flag names; flags on the command line win")
	fs.BoolVar(&c.seccomp, "seccomp", true, "confine the VMM with a seccomp filter once the VM is built")
	return c
}

// parseOneLine parses the flags of `vmm run`; a bad flag gives exactly one
// line on stderr (a CI log shows the problem, not the whole flag list), and
// -h the full list.
func parseOneLine(fs *flag.FlagSet, args []string, stderr io.Writer) int {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	switch {
	case err == nil:
		return ok
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintln(stderr, "usage: vmm run --kernel PATH | --firmware PATH|seabios|ovmf[,code=PATH][,vars=PATH][,secure-boot] [flags]")
		fs.PrintDefaults()
		return 0
	}
	fmt.Fprintf(stderr, "vmm run: %v (vmm run -h lists the flags)\n", err)
	return vmm.ExitUsage
}

// loadConfig applies --config; flags given on the command line win.
func (c *ciFlags) loadConfig(fs *flag.FlagSet, stderr io.Writer) int {
	if c.config == "" {
		return ok
	}
	data, err := readConfig(c.config)
	if err != nil {
		fmt.Fprintf(stderr, "vmm run: --config %s: %v\n", c.config, err)
		return vmm.ExitError
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := flagfile.Apply(fs, data, set, "config"); err != nil {
		fmt.Fprintf(stderr, "vmm run: --config %s: %v\n", c.config, err)
		return vmm.ExitUsage
	}
	return ok
}

func readConfig(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, pathErr(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, pathErr(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, fmt.Errorf("not readable: %w", pathErr(err))
	}
	if len(data) > maxConfigFile {
		return nil, fmt.Errorf("larger than %d KiB", maxConfigFile>>10)
	}
	return data, nil
}

func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// configure checks the CI flags against each other and the console, and
// puts the patterns into cfg.
func (c *ciFlags) configure(cfg *vmm.Config, consoleSpec string, stderr io.Writer) int {
	var err error
	if cfg.Expect, err = compile("--expect", c.expect); err == nil {
		cfg.Fail, err = compile("--fail", c.fail)
	}
	if err != nil {
		fmt.Fprintf(stderr, "vmm run: %v\n", err)
		return vmm.ExitUsage
	}
	if c.expect != "" && c.expect == c.fail {
		fmt.Fprintf(stderr, "vmm run: --expect and --fail are the same pattern %q\n", c.expect)
		return vmm.ExitUsage
	}
	paths := map[string]string{}
	for _, p := range []struct{ flag, path string }{
		{"--console", consoleFile(consoleSpec)}, {"--console-log", c.consoleLog}, {"--report", c.report},
		{"--kernel", cfg.Kernel}, {"--initrd", cfg.Initrd}, {"--config", c.config},
		{"--firmware", firmwareFile(cfg.Firmware)},
	} {
		if p.path == "" {
			continue
		}
		abs, err := filepath.Abs(p.path)
		if err != nil {
			abs = p.path
		}
		if other, dup := paths[abs]; dup {
			fmt.Fprintf(stderr, "vmm run: %s and %s name the same file %s\n", other, p.flag, p.path)
			return vmm.ExitUsage
		}
		paths[abs] = p.flag
	}
	return ok
}

func consoleFile(spec string) string {
	if len(spec) > len("file:") && spec[:len("file:")] == "file:" {
		return spec[len("file:"):]
	}
	return ""
}

func compile(flag, pattern string) (*regexp.Regexp, error) {
	if pattern == "" {
		return nil, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return re, nil
}

// openOutputs opens the console log (teeing cfg.ConsoleOut into it) and the
// report file, before the VM exists and before seccomp forbids opening files.
func (c *ciFlags) openOutputs(cfg *vmm.Config, stderr io.Writer) int {
	open := func(flag, path string) (*os.File, bool) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			fmt.Fprintf(stderr, "vmm run: %s %s: %v\n", flag, path, pathErr(err))
			return nil, false
		}
		return f, true
	}
	var good bool
	if c.consoleLog != "" {
		if c.logFile, good = open("--console-log", c.consoleLog); !good {
			return vmm.ExitError
		}
		// Write-through: every console write is one write(2) to the file, so
		// the kernel holds it even if vmm is killed the next instant. The log
		// comes first: whatever a reader saw on the console is already in it.
		cfg.ConsoleOut = tee{c.logFile, cfg.ConsoleOut}
	}
	if c.report != "" {
		if c.reportFile, good = open("--report", c.report); !good {
			c.close()
			return vmm.ExitError
		}
	}
	return ok
}

// tee writes to every writer even when one fails (a closed stdout must not
// cost the log its bytes).
type tee []io.Writer

func (t tee) Write(p []byte) (int, error) {
	var first error
	for _, w := range t {
		if w == nil {
			continue
		}
		if _, err := w.Write(p); err != nil && first == nil {
			first = err
		}
	}
	return len(p), first
}

// writeReport writes the report if one was asked for; a failure is reported
// on stderr and turns a successful exit code into 1.
func (c *ciFlags) writeReport(res vmm.Result, code int, stderr io.Writer) int {
	if c.reportFile == nil {
		return code
	}
	rep := res.Report(c.expect, c.fail)
	rep.ExitCode = code
	rep.Timing.CommandUnixNS = c.started.UnixNano()
	if err := vmm.WriteReport(c.reportFile, rep); err != nil {
		fmt.Fprintf(stderr, "vmm run: --report: %v\n", err)
		if code == 0 {
			return vmm.ExitError
		}
	}
	return code
}

func (c *ciFlags) close() {
	for _, f := range []*os.File{c.logFile, c.reportFile} {
		if f != nil {
			f.Close()
		}
	}
}

// handleSignals turns the first SIGINT or SIGTERM into a cancelled run (the
// guest stops, vmm exits 130 after its report); a second one restores the
// terminal through restore and exits 130 at once.
func handleSignals(restore func(), stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			cancel(fmt.Errorf("%v", s))
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			restore()
			fmt.Fprintf(stderr, "vmm run: second signal (%v): exiting without waiting for the guest\n", s)
			os.Exit(vmm.ExitInterrupted)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// lockDown installs the seccomp filter unless --seccomp=false.
func (c *ciFlags) lockDown(stderr io.Writer) int {
	if !c.seccomp {
		return ok
	}
	// Load the local time zone now: slog formats times with it and the
	// filter forbids opening /etc/localtime later.
	_ = time.Now().Local().String()
	prog, err := seccomp.VMM().Program()
	if err == nil {
		err = seccomp.Install(prog)
	}
	if err != nil {
		fmt.Fprintf(stderr, "vmm run: --seccomp: %v (--seccomp=false runs without the filter)\n", err)
		return vmm.ExitError
	}
	return ok
}

// firmwareFile is the file --firmware names, if any.
func firmwareFile(arg string) string {
	if arg == "" {
		return ""
	}
	return vmm.FirmwarePath(arg)
}

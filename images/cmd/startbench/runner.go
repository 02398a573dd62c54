package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/vmmdev/vmm/vmm"
)

// sample is one run of one runner.
type sample struct {
	FirstByte time.Duration `json:"first_byte_ns"`
	Exit      time.Duration `json:"exit_ns"` // 0 for runners that are killed
	PeakRSS   uint64        `json:"peak_rss_kib"`
	// vmm only, from its report: exec to the guest's first exit, and the
	// VMM's memory beyond the guest RAM it has resident.
	FirstExit   time.Duration `json:"first_exit_ns,omitempty"`
	OverheadKiB uint64        `json:"overhead_kib,omitempty"`
	// Own is vmm's own part of FirstExit: from its command starting (the
	// process and Go runtime already up) to the first guest exit.
	Own time.Duration `json:"own_ns,omitempty"`
}

type runner struct {
	name string
	args []string // binary and arguments
	// kill: the runner does not exit by itself once the guest is done.
	kill bool
	// pty: stdin must be a terminal.
	pty    bool
	report string // vmm's --report file
	wantRC int
	env    []string
}

// setupRunners writes the guest into scratch and returns the runners.
func setupRunners(o options, scratch string, stderr io.Writer) ([]*runner, error) {
	kernel := filepath.Join(scratch, "guest.bzImage")
	fw := filepath.Join(scratch, "guest.fw")
	initrd := filepath.Join(scratch, "empty.initrd")
	for path, data := range map[string][]byte{kernel: bzImage(), fw: firmware(), initrd: {0}} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return nil, fmt.Errorf("write guest: %w", err)
		}
	}
	vmmBin, err := exec.LookPath(o.vmm)
	if err != nil {
		return nil, fmt.Errorf("vmm binary %s: %w (run make build)", o.vmm, err)
	}
	report := filepath.Join(scratch, "vmm-report.json")
	mem := strconv.Itoa(guestMiB)
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("startbench binary: %w", err)
	}
	runners := []*runner{{
		// The host's own cost of starting and ending a small static Go
		// process that prints the byte: what no VMM can go below.
		name: "noop", args: []string{self}, env: []string{noopEnv + "=1"},
	}, {
		name: "vmm",
		args: []string{vmmBin, "run", "--kernel", kernel, "--memory", mem + "M", "--console", "stdio",
			"--report", report, "--timeout", o.timeout.String()},
		report: report, wantRC: 33,
	}}
	if o.qemu != "none" {
		q, err := exec.LookPath(o.qemu)
		if err != nil {
			fmt.Fprintf(stderr, "startbench: QEMU (%s) not found: not compared (make setup installs it)\n", o.qemu)
		} else {
			runners = append(runners, &runner{name: "qemu", wantRC: 33, args: []string{q,
				"-accel", "kvm", "-M", "microvm", "-cpu", "host,-arch-capabilities", "-m", mem,
				"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-serial", "stdio",
				"-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-bios", fw}})
		}
	}
	if o.gokvm != "none" {
		g, err := gokvmBinary(o)
		if err != nil {
			fmt.Fprintf(stderr, "startbench: gokvm not available, not compared: %v\n", err)
		} else {
			runners = append(runners, &runner{name: "gokvm", kill: true, pty: true, args: []string{g,
				"boot", "-k", kernel, "-i", initrd, "-m", mem + "M", "-p", "console=ttyS0"}})
		}
	}
	return runners, nil
}

// gokvmBinary builds the pinned gokvm with `go install` (module proxy) into
// the work directory, once.
func gokvmBinary(o options) (string, error) {
	if o.gokvm != "auto" {
		return exec.LookPath(o.gokvm)
	}
	bin := filepath.Join(o.work, "bin")
	path := filepath.Join(bin, "gokvm")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", gokvmModule)
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %w: %s", gokvmModule, err, bytes.TrimSpace(out))
	}
	return path, nil
}

// once runs the runner: time to the guest's first byte on stdout, to exit
// (or kill), and the process's peak RSS.
func (r *runner) once(timeout time.Duration) (sample, error) {
	var s sample
	if r.report != "" {
		_ = os.Remove(r.report)
	}
	cmd := exec.Command(r.args[0], r.args[1:]...)
	if r.env != nil {
		cmd.Env = append(os.Environ(), r.env...)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return s, err
	}
	if r.pty {
		master, slave, err := openPTY()
		if err != nil {
			return s, err
		}
		defer master.Close()
		defer slave.Close()
		cmd.Stdin = slave
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return s, fmt.Errorf("start %s: %w", r.args[0], err)
	}
	timer := time.AfterFunc(timeout, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	got := make(chan error, 1)
	go func() {
		br := bufio.NewReader(out)
		for {
			b, err := br.ReadByte()
			if err != nil {
				got <- fmt.Errorf("no '%c' from the guest: %w", firstByte, err)
				return
			}
			if b == firstByte {
				s.FirstByte = time.Since(t0)
				got <- nil
				_, _ = io.Copy(io.Discard, br)
				return
			}
		}
	}()
	readErr := <-got
	if r.kill {
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	if !r.kill {
		s.Exit = time.Since(t0)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.PeakRSS = uint64(ru.Maxrss)
	}
	if readErr != nil {
		return s, fmt.Errorf("%w (stderr: %s)", readErr, bytes.TrimSpace(stderr.Bytes()))
	}
	if !r.kill {
		var ee *exec.ExitError
		if rc := cmd.ProcessState.ExitCode(); rc != r.wantRC || (waitErr != nil && !errors.As(waitErr, &ee)) {
			return s, fmt.Errorf("exit %d, want %d: %v (stderr: %s)", rc, r.wantRC, waitErr, bytes.TrimSpace(stderr.Bytes()))
		}
	}
	if r.report != "" {
		data, err := os.ReadFile(r.report)
		if err != nil {
			return s, fmt.Errorf("vmm report: %w", err)
		}
		var rep vmm.Report
		if err := json.Unmarshal(data, &rep); err != nil {
			return s, fmt.Errorf("vmm report: %w", err)
		}
		s.FirstExit = time.Duration(rep.Timing.StopUnixNS - t0.UnixNano())
		s.OverheadKiB = rep.Memory.OverheadKiB
		if rep.Timing.CommandUnixNS > 0 {
			s.Own = time.Duration(rep.Timing.StopUnixNS - rep.Timing.CommandUnixNS)
		}
	}
	return s, nil
}

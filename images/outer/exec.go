package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/images/scenario"
)

// Exec mode: the kernel command line names a job file on the host (see
// scenario.Job); the host's root file system arrives read-only over 9p and
// the job's program runs chrooted into a writable overlay of it (changes
// stay in the machine's memory), so it finds every file at the path it has
// on the host, wherever that is (a CI clone may live under /tmp). Its
// output leaves through a virtio-serial port, byte for byte; its exit
// status through the console protocol.
const (
	// hostRoot is where the host's root is mounted.
	hostRoot = "/host"
	// scratch holds the overlay's upper and work directories (tmpfs).
	scratch = "/scratch"
	// jobRoot is the overlay the job is chrooted into.
	jobRoot = "/job"
)

// execScenario names the job in its heartbeat and result lines.
const execScenario = "exec"

// cmdlineParam returns the value of key on the kernel command line, or ""
// when it is absent: scenario.ExecParam's job path (none when the machine
// runs the scenario suite), scenario.ImagesParam's mount point.
func cmdlineParam(cmdline, key string) string {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// runExec loads KVM, mounts the host, runs the job and reports its exit
// status as a result line; it returns the outer init's exit code.
func runExec(ctx context.Context, jobPath string, emit func(string), log *slog.Logger) int {
	if err := loadKVM(ctx, log); err != nil {
		emit(scenario.KVMFailedLine(err.Error()))
		return 1
	}
	emit(scenario.KVMReadyLine())
	job, port, err := prepareExec(jobPath)
	if err != nil {
		emit(scenario.ErrorLine(err.Error()))
		return 1
	}
	defer port.Close()
	r := &runner{emit: emit, beat: heartbeatInterval, root: jobRoot}
	res := r.execJob(ctx, job, port)
	emit(res.Line())
	if res.Pass {
		emit(scenario.DoneLine(1, 0))
		return 0
	}
	emit(scenario.DoneLine(0, 1))
	return 1
}

// prepareExec mounts the host's root, reads the job, lays out the job's
// root and opens the output port.
func prepareExec(jobPath string) (scenario.Job, *os.File, error) {
	var job scenario.Job
	if err := mountHost(); err != nil {
		return job, nil, err
	}
	data, err := os.ReadFile(filepath.Join(hostRoot, jobPath))
	if err != nil {
		return job, nil, fmt.Errorf("reading the job: %w", err)
	}
	if err := json.Unmarshal(data, &job); err != nil {
		return job, nil, fmt.Errorf("job %s: %w", jobPath, err)
	}
	if err := job.Validate(); err != nil {
		return job, nil, fmt.Errorf("job %s: %w", jobPath, err)
	}
	if err := layoutRoot(); err != nil {
		return job, nil, err
	}
	port, err := openPort(scenario.ExecPortName)
	if err != nil {
		return job, nil, err
	}
	return job, port, nil
}

// mountHost mounts the host's root read-only at hostRoot.
func mountHost() error {
	if err := mount9p(scenario.ExecRootTag, hostRoot); err != nil {
		return fmt.Errorf("mounting the host's root: %w", err)
	}
	return nil
}

// mount9p mounts the host's 9p share tag read-only at dir. cache=loose is
// right for files nobody changes while the machine runs, and a large msize
// makes reading binaries and disk images far fewer round trips.
func mount9p(tag, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	opts := "trans=virtio,version=9p2000.L,cache=loose,msize=512000"
	if err := unix.Mount(tag, dir, "9p", unix.MS_RDONLY, opts); err != nil {
		return fmt.Errorf("9p tag %s on %s: %w", tag, dir, err)
	}
	return nil
}

// layoutRoot makes jobRoot: an overlay of the host's root with a tmpfs
// upper layer, and what a running system has on top of its files: its own
// /proc, /sys and /dev (with /dev/kvm), a fresh devpts and /dev/shm.
func layoutRoot() error {
	for _, d := range []string{scratch, jobRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("tmpfs", scratch, "tmpfs", 0, ""); err != nil {
		return fmt.Errorf("mounting tmpfs on %s: %w", scratch, err)
	}
	upper, work := filepath.Join(scratch, "upper"), filepath.Join(scratch, "work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", hostRoot, upper, work)
	if err := unix.Mount("overlay", jobRoot, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mounting the overlay of the host's root: %w", err)
	}
	for _, m := range []struct{ fstype, target, opts string }{
		{"proc", "/proc", ""}, {"sysfs", "/sys", ""}, {"devtmpfs", "/dev", ""},
		{"devpts", "/dev/pts", "newinstance,ptmxmode=0666"}, {"tmpfs", "/dev/shm", ""},
	} {
		target := filepath.Join(jobRoot, m.target)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.fstype, target, m.fstype, 0, m.opts); err != nil {
			return fmt.Errorf("mounting %s on %s: %w", m.fstype, target, err)
		}
	}
	// The devpts instance is the job's own: /dev/ptmx must be its.
	ptmx := filepath.Join(jobRoot, "/dev/ptmx")
	if err := os.Remove(ptmx); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.Symlink("pts/ptmx", ptmx)
}

// openPort opens the virtio-serial port the host named name.
func openPort(name string) (*os.File, error) {
	const class = "/sys/class/virtio-ports"
	ents, err := os.ReadDir(class)
	if err != nil {
		return nil, fmt.Errorf("virtio ports: %w", err)
	}
	for _, e := range ents {
		got, err := os.ReadFile(filepath.Join(class, e.Name(), "name"))
		if err != nil || strings.TrimSpace(string(got)) != name {
			continue
		}
		f, err := os.OpenFile(filepath.Join("/dev", e.Name()), os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("output port: %w", err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("no virtio port named %s", name)
}

// execJob runs the job chrooted into r.root (none when empty) with its
// output on out, and reports it as one result: exit status, time, and why
// it failed.
func (r *runner) execJob(ctx context.Context, job scenario.Job, out io.Writer) scenario.Result {
	res := scenario.Result{Name: execScenario, Runner: scenario.RunnerExec, Exit: scenario.ExitNone,
		FirstLineS: scenario.NoFirstLine, MarkS: scenario.NoFirstLine}
	if job.TimeoutS > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(job.TimeoutS*float64(time.Second)))
		defer cancel()
	}
	// exec names only the program when the chdir after chroot fails.
	if _, err := os.Stat(filepath.Join(r.root, job.Dir)); err != nil {
		res.Reason = fmt.Sprintf("working directory %s is not reachable in the nested test host: %v", job.Dir, err)
		return res
	}
	cmd := exec.CommandContext(ctx, job.Args[0], job.Args[1:]...)
	cmd.Dir, cmd.Env = job.Dir, append(slices.Clip(job.Env), scenario.ExecInsideEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: r.root, Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	start := time.Now()
	// The console only feeds the heartbeats; the port gets every byte.
	con := newConsole(start, "", nil)
	w := io.MultiWriter(out, con)
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Start()
	if err == nil {
		stop := r.heartbeat(execScenario, con)
		err = cmd.Wait()
		stop()
	}
	res.TotalS = time.Since(start).Seconds()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		res.Exit = 0
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		res.Exit = exitErr.ExitCode()
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.Reason = fmt.Sprintf("killed after the job's timeout of %.0fs", job.TimeoutS)
	case err != nil && !errors.As(err, &exitErr):
		res.Reason = fmt.Sprintf("running %s: %v", job.Args[0], err)
	case err != nil:
		res.Reason = exitErr.Error() // "exit status 1", "signal: killed"
	}
	res.Pass = res.Reason == ""
	return res
}

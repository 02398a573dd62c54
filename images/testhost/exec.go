package testhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/scenario"
)

// ErrExecNoResult: the outer machine ended without reporting the program's
// exit status.
var ErrExecNoResult = errors.New("the nested test host reported no exit status")

// DefaultExecTimeout bounds a job that names no timeout of its own.
const DefaultExecTimeout = time.Hour

// Exec runs one host program inside the nested test host, where /dev/kvm is
// real (nested SVM under QEMU's software emulation). The host's root file
// system is shared read-only over 9p, so the program, its working directory
// and every file it reads are at their host paths; it writes to tmpfs at
// /tmp, /run and /var/tmp, which vanish with the machine. Its output comes
// back byte for byte through a virtio-serial port.
type Exec struct {
	Config images.Config
	// Job is the program; its Dir and Env are used as given.
	Job scenario.Job
	// Output receives the program's stdout and stderr.
	Output io.Writer
	// InstallQEMU allows apt-get installing qemu-system-x86 when missing,
	// and the outer QEMU's build dependencies.
	InstallQEMU bool
	// Console, if set, receives the outer console verbatim.
	Console io.Writer
}

// Run boots the outer machine once for the job and returns the program's
// exit status. An error means the program's status is unknown: the machine
// did not start, failed to boot, went silent or ran out of time.
func (e Exec) Run(ctx context.Context) (int, error) {
	cfg, err := e.Config.WithDefaults()
	if err != nil {
		return 0, err
	}
	if err := e.Job.Validate(); err != nil {
		return 0, fmt.Errorf("job: %w", err)
	}
	qemu, err := OuterQEMU(ctx, cfg, e.InstallQEMU)
	if err != nil {
		return 0, err
	}
	k, err := images.Kernel(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("kernel: %w", err)
	}
	initrd, err := images.OuterExecInitramfs(ctx, cfg, k)
	if err != nil {
		return 0, err
	}
	// The job file must be where the outer init reads it through 9p
	// before it covers /tmp with its own tmpfs.
	dir, err := os.MkdirTemp("", "vmm-exec-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	jobPath := filepath.Join(dir, "job.json")
	data, err := json.Marshal(e.Job)
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(jobPath, data, 0o644); err != nil {
		return 0, err
	}
	sock := filepath.Join(dir, "out.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return 0, fmt.Errorf("output socket: %w", err)
	}
	copied := make(chan error, 1)
	go func() { copied <- acceptCopy(ln, e.Output) }()

	timeout := DefaultExecTimeout
	if e.Job.TimeoutS > 0 {
		timeout = time.Duration(e.Job.TimeoutS * float64(time.Second))
	}
	m := Machine{
		QEMU: qemu, Kernel: k.Vmlinuz, Initrd: initrd, Timeout: timeout + outerBootBudget,
		Append: DefaultAppend + " " + scenario.ExecParam + "=" + jobPath,
		Extra:  ExecDevices(sock), Console: e.Console,
	}
	out, runErr := m.Run(ctx)
	// QEMU has exited: its end of the socket is closed, or it never
	// connected and closing the listener ends the wait.
	ln.Close()
	copyErr := <-copied
	if runErr != nil {
		return 0, runErr
	}
	if copyErr != nil {
		return 0, fmt.Errorf("program output: %w", copyErr)
	}
	rs := out.ResultsFor("exec")
	if len(rs) != 1 {
		return 0, fmt.Errorf("%w (%s)", ErrExecNoResult, out.Summary())
	}
	r := rs[0]
	if r.Exit == scenario.ExitNone {
		return 0, fmt.Errorf("program did not exit on its own: %s", r.Reason)
	}
	return r.Exit, nil
}

// ExecDevices are the outer QEMU's devices for exec mode: the host's root
// read-only over 9p (remapping inode numbers, since it spans several file
// systems) and a virtio-serial port that QEMU connects to the unix socket
// sock, for the program's output.
func ExecDevices(sock string) []string {
	return []string{
		"-virtfs", "local,path=/,mount_tag=" + scenario.ExecRootTag + ",security_model=none,readonly=on,multidevs=remap",
		"-device", "virtio-serial-pci,id=vser",
		"-chardev", "socket,id=execout,path=" + sock,
		"-device", "virtserialport,bus=vser.0,chardev=execout,name=" + scenario.ExecPortName,
	}
}

// acceptCopy takes QEMU's connection and copies it to w until QEMU closes
// it. A closed listener before any connection is not an error: the
// machine's own error says why QEMU never connected.
func acceptCopy(ln net.Listener, w io.Writer) error {
	conn, err := ln.Accept()
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		return err
	}
	defer conn.Close()
	_, err = io.Copy(w, conn)
	return err
}

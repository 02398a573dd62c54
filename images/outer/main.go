// Command outer is /init of the nested test host: it loads the KVM modules,
// runs the scenarios of /scenarios.json (each an inner VMM invocation),
// prints one "E2E:" line per run on the console (see package scenario) and
// powers the outer machine off. With scenario.ExecParam on the kernel
// command line it runs one host program instead (exec.go).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/images/scenario"
)

// Paths inside the outer initramfs; images.OuterInitramfs puts them there.
const (
	scenariosPath = "/scenarios.json"
	vmmPath       = "/vmm"
	qemuPath      = "/usr/bin/qemu-system-x86_64"
	kvmPath       = "/dev/kvm"
)

// heartbeatInterval is how often a running scenario reports progress.
const heartbeatInterval = 30 * time.Second

// modulesTimeout bounds loading the KVM modules (slow under TCG, not this slow).
const modulesTimeout = 3 * time.Minute

func main() {
	pid1 := os.Getpid() == 1
	if pid1 {
		if err := setupPID1(); err != nil {
			// Without a console nothing can be reported; still power off.
			fmt.Fprintln(os.Stderr, scenario.ErrorLine(err.Error()))
			powerOff()
		}
	}
	out := &lineEmitter{w: os.Stdout}
	if pid1 {
		out = kmsgEmitter()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var code int
	cmdline := readCmdline()
	if job := cmdlineParam(cmdline, scenario.ExecParam); job != "" {
		code = runExec(context.Background(), job, out.emit, log)
	} else {
		code = runSuite(context.Background(), cmdlineParam(cmdline, scenario.ImagesParam), out.emit, log)
	}
	if pid1 {
		powerOff()
	}
	os.Exit(code)
}

// runSuite loads KVM, mounts the image share at imagesDir (none when
// empty), runs the scenarios and returns the process exit code.
func runSuite(ctx context.Context, imagesDir string, emit func(string), log *slog.Logger) int {
	if err := loadKVM(ctx, log); err != nil {
		emit(scenario.KVMFailedLine(err.Error()))
		return 1
	}
	emit(scenario.KVMReadyLine())
	if imagesDir != "" {
		if !filepath.IsAbs(imagesDir) {
			emit(scenario.ErrorLine(fmt.Sprintf("%s=%s: not an absolute path", scenario.ImagesParam, imagesDir)))
			return 1
		}
		if err := mount9p(scenario.ImagesTag, imagesDir); err != nil {
			emit(scenario.ErrorLine("mounting the image share: " + err.Error()))
			return 1
		}
	}

	data, err := os.ReadFile(scenariosPath)
	if err != nil {
		emit(scenario.ErrorLine(fmt.Sprintf("reading scenarios: %v", err)))
		return 1
	}
	list, err := scenario.Parse(data)
	if err != nil {
		emit(scenario.ErrorLine(err.Error()))
		return 1
	}
	r := &runner{vmm: vmmPath, qemu: qemuPath, emit: emit, beat: heartbeatInterval}
	pass, fail := r.suite(ctx, list)
	emit(scenario.DoneLine(pass, fail))
	if fail > 0 {
		return 1
	}
	return 0
}

func loadKVM(ctx context.Context, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, modulesTimeout)
	defer cancel()
	if err := loadModules(ctx, log); err != nil {
		return err
	}
	return checkKVM(kvmPath)
}

// kmsgMaxLine keeps a record under the kernel's limit for one /dev/kmsg
// write (LOG_LINE_MAX, 992 bytes), with room for the priority prefix.
const kmsgMaxLine = 960

// kmsgEmitter prints protocol lines through the kernel log at KERN_CRIT,
// which reaches the console even with "quiet": printk writes the serial
// port by polling, so lines get out when the tty's interrupt-driven path
// stalls (seen with nested guests running), and kernel messages never split
// them. The outer command line must say printk.devkmsg=on, or the kernel
// rate-limits the writes. Without /dev/kmsg, stdout does.
func kmsgEmitter() *lineEmitter {
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "outer init: /dev/kmsg: %v; protocol lines go to stdout\n", err)
		return &lineEmitter{w: os.Stdout}
	}
	return &lineEmitter{w: f, prefix: "<2>", maxLine: kmsgMaxLine}
}

// setupPID1 mounts the pseudo file systems and points stdio at /dev/console:
// the kernel opens the console before init only if the archive has the node.
// /var/tmp is where QEMU 7.2 puts a snapshot=on drive's overlay.
func setupPID1() error {
	mounts := []struct{ fstype, target string }{
		{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"}, {"tmpfs", "/tmp"}, {"tmpfs", "/run"},
		{"tmpfs", "/var/tmp"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", m.target, err)
		}
		if err := unix.Mount(m.fstype, m.target, m.fstype, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mounting %s on %s: %w", m.fstype, m.target, err)
		}
	}
	fd, err := unix.Open("/dev/console", unix.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening /dev/console: %w", err)
	}
	for _, target := range []int{0, 1, 2} {
		if err := unix.Dup3(fd, target, 0); err != nil && fd != target {
			return fmt.Errorf("dup3 console to fd %d: %w", target, err)
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
	return os.Setenv("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
}

// readCmdline returns the kernel command line ("" outside a machine).
func readCmdline() string {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return ""
	}
	return string(b)
}

func powerOff() {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintln(os.Stderr, scenario.ErrorLine(fmt.Sprintf("power off: %v", err)))
	}
	// init must not exit: that panics the kernel. Block without spinning.
	select {}
}

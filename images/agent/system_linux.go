package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/images/modload"
)

// syslog(2) actions (linux/syslog.h); x/sys/unix does not name them.
const (
	syslogActionReadAll    = 3
	syslogActionSizeBuffer = 10
)

// debugExitPort is the QEMU isa-debug-exit convention vmm follows: writing
// k there ends the VM with exit status 2k+1.
const debugExitPort = 0xf4

// linuxSystem is the real machine the agent runs on.
type linuxSystem struct{}

func (linuxSystem) mountAll() error {
	var errs []error
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("mkdir %s: %w", m.dir, err))
			continue
		}
		if err := unix.Mount(m.src, m.dir, m.fstype, unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s: %w", m.dir, err))
		}
	}
	return errors.Join(errs...)
}

func (linuxSystem) loadModules() error {
	dir, err := modload.Dir()
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil // an initramfs without modules needs none
	}
	_, err = modload.LoadAll(dir, nil)
	return err
}

func (linuxSystem) cmdline() (string, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return "", fmt.Errorf("read kernel command line: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (linuxSystem) release() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func (s linuxSystem) env() *env {
	return &env{root: os.DirFS("/"), kernelLog: readKernelLog, release: s.release(), io: linuxIO{}}
}

// readKernelLog returns dmesg through syslog(2), which needs no /dev/kmsg.
func readKernelLog() ([]string, error) {
	size, err := unix.Klogctl(syslogActionSizeBuffer, nil)
	if err != nil {
		return nil, fmt.Errorf("syslog size: %w", err)
	}
	if size <= 0 || size > 64<<20 {
		size = 1 << 20
	}
	buf := make([]byte, size)
	n, err := unix.Klogctl(syslogActionReadAll, buf)
	if err != nil {
		return nil, fmt.Errorf("syslog read: %w", err)
	}
	return parseKernelLog(buf[:n]), nil
}

// end performs the action. It returns only on failure.
func (s linuxSystem) end(action string, failures int) error {
	// Console writes return once the tty has the bytes, not once the UART
	// sent them; a debug-exit write or poweroff ends the VM at once and
	// would lose the summary. Wait for the console to drain first.
	drainConsole()
	switch action {
	case actionReboot:
		unix.Sync()
		return rebootErr(unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART))
	case actionPanic:
		return crash()
	case actionHang:
		s.hang()
	}
	unix.Sync()
	if failures > 0 {
		// Under vmm (or QEMU's isa-debug-exit) this ends the machine with
		// status 2k+1; elsewhere nothing listens and we power off below.
		if err := writeDebugExit(failures); err != nil {
			fmt.Fprintf(os.Stdout, "%sdebug-exit %s\n", linePrefix, jsonString(err.Error()))
		}
	}
	return rebootErr(unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF))
}

func rebootErr(err error) error {
	if err != nil {
		return fmt.Errorf("reboot(2): %w", err)
	}
	return errNotEnded
}

// writeDebugExit writes k (capped so 2k+1 fits an exit status) to port 0xf4.
func writeDebugExit(k int) error {
	f, err := os.OpenFile("/dev/port", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/port: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{debugExitByte(k)}, debugExitPort); err != nil {
		return fmt.Errorf("write port %#x: %w", debugExitPort, err)
	}
	return nil
}

// crash panics the kernel through sysrq, the way a real guest crash looks
// to the VMM (panic notifiers, pvpanic, Hyper-V crash MSRs all fire).
func crash() error {
	if err := os.WriteFile("/proc/sys/kernel/sysrq", []byte("1"), 0); err != nil {
		return fmt.Errorf("enable sysrq: %w", err)
	}
	unix.Sync()
	if err := os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0); err != nil {
		return fmt.Errorf("sysrq-trigger: %w", err)
	}
	return errNotEnded
}

// hang blocks forever without using the CPU: the VMM's timeout must end
// the machine. stdio is closed so nothing more reaches the console.
func (linuxSystem) hang() {
	for _, fd := range []int{0, 1, 2} {
		_ = unix.Close(fd)
	}
	for {
		_ = unix.Pause() // returns only when a signal is caught; pause again
	}
}

// drainConsole waits until the console has transmitted what was written
// (tcdrain: TCSBRK with a non-zero argument sends no break).
func drainConsole() {
	_ = unix.IoctlSetInt(int(os.Stdout.Fd()), unix.TCSBRK, 1)
}

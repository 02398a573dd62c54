package main

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"golang.org/x/sys/unix"
)

// consoleSwitcher is implemented by systems that can move the agent's
// output to another console once the modules are loaded.
type consoleSwitcher interface {
	useConsole(name string) error
}

// consoleWait bounds the wait for a console's device node: it appears
// when its driver (a module the agent just loaded) has bound.
const consoleWait = 10 * time.Second

var consoleName = regexp.MustCompile(`^[a-z]+[0-9]+$`)

// useConsole makes /dev/<name> (e.g. hvc0) the agent's stdin, stdout and
// stderr. A guest booted with console=hvc0 starts its init with no usable
// console, because virtio_console is a module: the agent reopens it here.
func (linuxSystem) useConsole(name string) error {
	if !consoleName.MatchString(name) {
		return fmt.Errorf("console %q: not a tty name", name)
	}
	dev := "/dev/" + name
	deadline := time.Now().Add(consoleWait)
	var fd int
	for {
		var err error
		fd, err = unix.Open(dev, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENXIO) {
			return fmt.Errorf("open %s: %w", dev, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("open %s: %w after %v", dev, err, consoleWait)
		}
		// Polling: there is no event for "this device node appeared"
		// without udev, and the wait is bounded.
		time.Sleep(20 * time.Millisecond)
	}
	defer unix.Close(fd)
	for _, target := range []int{0, 1, 2} {
		if err := unix.Dup3(fd, target, 0); err != nil {
			return fmt.Errorf("dup %s onto fd %d: %w", dev, target, err)
		}
	}
	// os.Stdout still writes fd 1, which is now the new console.
	return nil
}

package main

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// guestIO is what the device checks do beyond reading files: block device
// I/O, links, interface setup and sockets. linuxIO is the real one; tests
// use fakes.
type guestIO interface {
	openBlock(path string, write bool) (blockFile, error)
	openDirect(path string) (directFile, error)
	// mountReadOnly mounts the filesystem fstype on dev at dir (created
	// if missing); unmount undoes it.
	mountReadOnly(dev, dir, fstype string) (unmount func() error, err error)
	symlink(target, link string) error
	readlink(link string) (string, error)
	configureNet(ifname string, addr netip.Prefix) error
	ping(ctx context.Context, dst netip.Addr) (time.Duration, error)
	dial(ctx context.Context, addr string) (net.Conn, error)
	// onCPU runs fn on a thread bound to CPU cpu.
	onCPU(cpu int, fn func() error) error
	// readEFIVar reads an EFI variable's efivarfs file (attributes and
	// data; fs.ErrNotExist when the store lacks it), writeEFIVar creates
	// one; both mount efivarfs first if needed.
	readEFIVar(name string) ([]byte, error)
	writeEFIVar(name string, attrsAndData []byte) error
	// touchAndFree maps n bytes of anonymous memory, writes every page and
	// unmaps it; settle lets the guest run for d (the balloon check).
	touchAndFree(n int) error
	settle(d time.Duration)
	// suspendToRAM sets the RTC wake alarm wake ahead and suspends to RAM
	// (rtcwake -m mem); it returns once resumed, with how far
	// CLOCK_BOOTTIME advanced across it.
	suspendToRAM(wake time.Duration) (time.Duration, error)
	// unbind detaches device dev from the driver whose sysfs directory
	// is driverDir (relative to /), as writing dev to its unbind file does.
	unbind(driverDir, dev string) error
}

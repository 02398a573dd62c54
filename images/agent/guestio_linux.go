package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// linuxIO is guestIO on the running guest.
type linuxIO struct{}

func (linuxIO) openBlock(path string, write bool) (blockFile, error) {
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	return os.OpenFile(path, flag, 0)
}

// direct is a block device opened O_RDWR|O_DIRECT.
type direct struct{ *os.File }

// buffer maps anonymous memory: page-aligned, as O_DIRECT needs.
func (direct) buffer(n int) []byte {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		panic(fmt.Sprintf("map %d bytes: %v", n, err)) // out of memory; safeRun reports it
	}
	return b
}

func (linuxIO) openDirect(path string) (directFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		return nil, err
	}
	return direct{f}, nil
}

func (linuxIO) mountReadOnly(dev, dir, fstype string) (func() error, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mount(dev, dir, fstype, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return nil, fmt.Errorf("mount %s (%s) on %s: %w", dev, fstype, dir, err)
	}
	return func() error { return unix.Unmount(dir, 0) }, nil
}

func (linuxIO) symlink(target, link string) error {
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	if err := os.Symlink(target, link); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

func (linuxIO) readlink(link string) (string, error) {
	t, err := os.Readlink(link)
	if err != nil {
		return "", err
	}
	// The link must lead to a block device, as udev's do.
	fi, err := os.Stat(link)
	if err != nil {
		return "", err
	}
	if fi.Mode()&os.ModeDevice == 0 {
		return "", fmt.Errorf("%s -> %s is not a device", link, t)
	}
	return t, nil
}

// configureNet sets addr on ifname and brings it (and lo) up.
func (linuxIO) configureNet(ifname string, addr netip.Prefix) error {
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(sock)
	set := func(req uint, ip netip.Addr) error {
		ifr, err := unix.NewIfreq(ifname)
		if err != nil {
			return err
		}
		a := ip.As4()
		if err := ifr.SetInet4Addr(a[:]); err != nil {
			return err
		}
		return unix.IoctlIfreq(sock, req, ifr)
	}
	if err := set(unix.SIOCSIFADDR, addr.Addr()); err != nil {
		return fmt.Errorf("set address: %w", err)
	}
	mask, _ := netip.AddrFromSlice(net.CIDRMask(addr.Bits(), 32))
	if err := set(unix.SIOCSIFNETMASK, mask); err != nil {
		return fmt.Errorf("set netmask: %w", err)
	}
	for _, name := range []string{ifname, "lo"} {
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		if err := unix.IoctlIfreq(sock, unix.SIOCGIFFLAGS, ifr); err != nil {
			return fmt.Errorf("%s flags: %w", name, err)
		}
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		if err := unix.IoctlIfreq(sock, unix.SIOCSIFFLAGS, ifr); err != nil {
			return fmt.Errorf("%s up: %w", name, err)
		}
	}
	return nil
}

// ping sends ICMP echo requests once a second until a reply comes back (the
// first may be lost to ARP resolution) or ctx ends.
func (linuxIO) ping(ctx context.Context, dst netip.Addr) (time.Duration, error) {
	c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return 0, fmt.Errorf("icmp socket: %w", err)
	}
	defer c.Close()
	id := uint16(os.Getpid())
	buf := make([]byte, 1500)
	for seq := uint16(1); ; seq++ {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("no echo reply: %w", ctx.Err())
		}
		msg := echoRequest(id, seq)
		start := time.Now()
		if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return 0, fmt.Errorf("send echo: %w", err)
		}
		_ = c.SetReadDeadline(start.Add(time.Second))
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				break // deadline: send the next request
			}
			if isEchoReply(buf[:n], id, seq) && from.String() == dst.String() {
				return time.Since(start), nil
			}
		}
	}
}

// echoRequest builds an ICMP echo request with its checksum.
func echoRequest(id, seq uint16) []byte {
	m := make([]byte, 16)
	m[0] = 8 // echo request
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	copy(m[8:], "vmm-ping")
	binary.BigEndian.PutUint16(m[2:], icmpChecksum(m))
	return m
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func isEchoReply(b []byte, id, seq uint16) bool {
	return len(b) >= 8 && b[0] == 0 && binary.BigEndian.Uint16(b[4:]) == id && binary.BigEndian.Uint16(b[6:]) == seq
}

func (linuxIO) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp4", addr)
}

func (linuxIO) onCPU(cpu int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is bound to the CPU for good: it is never unlocked,
		// so it exits with the goroutine instead of running others.
		runtime.LockOSThread()
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			errc <- fmt.Errorf("bind to CPU %d: %w", cpu, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// mountEFIVars mounts efivarfs at efiVarsDir (the kernel made the
// directory when it found EFI runtime services).
func mountEFIVars() error {
	err := unix.Mount("efivarfs", efiVarsDir, "efivarfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount efivarfs on %s: %w", efiVarsDir, err)
	}
	return nil
}

func (linuxIO) readEFIVar(name string) ([]byte, error) {
	if err := mountEFIVars(); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(efiVarsDir, name))
}

// writeEFIVar creates the variable in one write, as efivarfs requires.
func (linuxIO) writeEFIVar(name string, attrsAndData []byte) error {
	if err := mountEFIVars(); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(efiVarsDir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(attrsAndData); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (linuxIO) touchAndFree(n int) error {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	return unix.Munmap(b)
}

func (linuxIO) settle(d time.Duration) { time.Sleep(d) }

func (linuxIO) unbind(driverDir, dev string) error {
	return os.WriteFile("/"+driverDir+"/unbind", []byte(dev), 0)
}

// suspendToRAM does what rtcwake -m mem -s N does: clear and set
// rtc0's wake alarm, then write "mem" to /sys/power/state, which returns
// after the resume.
func (linuxIO) suspendToRAM(wake time.Duration) (time.Duration, error) {
	const alarm = "/sys/class/rtc/rtc0/wakealarm"
	if err := os.WriteFile(alarm, []byte("0"), 0); err != nil {
		return 0, fmt.Errorf("clear %s: %w", alarm, err)
	}
	if err := os.WriteFile(alarm, fmt.Appendf(nil, "+%d", int(wake.Seconds())), 0); err != nil {
		return 0, fmt.Errorf("set %s: %w", alarm, err)
	}
	var before, after unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &before); err != nil {
		return 0, err
	}
	if err := os.WriteFile("/sys/power/state", []byte("mem"), 0); err != nil {
		return 0, fmt.Errorf("write mem to /sys/power/state: %w", err)
	}
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &after); err != nil {
		return 0, err
	}
	return time.Duration(after.Nano() - before.Nano()), nil
}

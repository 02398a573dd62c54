package net

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Offload flags of TUNSETOFFLOAD (linux/if_tun.h): what the reader of the tap
// accepts, i.e. what the guest negotiated to receive.
const (
	tunFCSUM   = 0x01
	tunFTSO4   = 0x02
	tunFTSO6   = 0x04
	tunFTSOECN = 0x08
)

// OffloadChecksum is TUNSETOFFLOAD's checksum flag alone: a reader that
// completes checksums itself but takes no segmented frames (netvsc).
const OffloadChecksum = tunFCSUM

// HeaderSize is the virtio-net header of VIRTIO_F_VERSION_1 devices
// (struct virtio_net_hdr_mrg_rxbuf): the tap is told to use the same size, so
// frames move between the tap and the rings with the header as it is.
const HeaderSize = 12

// ErrNoTap means the tap device could not be created or attached.
var ErrNoTap = errors.New("tap device unavailable")

// Tap is a tap interface opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR: every
// read and write is one frame preceded by a 12-byte virtio-net header. Its fd
// is non-blocking and registered with Go's poller, so a goroutine blocked on
// it parks instead of spinning.
type Tap struct {
	f    *os.File
	name string
	// offloads is true when the kernel accepts checksum and TSO offloads.
	offloads bool
}

// OpenTap attaches to (or creates) the tap interface name.
func OpenTap(name string) (*Tap, error) {
	if name == "" || len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("%w: interface name %q must be 1 to %d bytes", ErrNoTap, name, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: open /dev/net/tun: %w", ErrNoTap, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: %s: %w", ErrNoTap, name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: TUNSETIFF %s: %w", ErrNoTap, name, err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, HeaderSize); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: TUNSETVNETHDRSZ %s: %w", ErrNoTap, name, err)
	}
	t := &Tap{f: os.NewFile(uintptr(fd), "tap:"+name), name: ifr.Name()}
	// Probe the offloads once; the guest's choice is applied at activation.
	t.offloads = t.SetOffload(tunFCSUM|tunFTSO4|tunFTSO6|tunFTSOECN) == nil
	if err := t.SetOffload(0); err != nil {
		t.Close()
		return nil, fmt.Errorf("%w: TUNSETOFFLOAD %s: %w", ErrNoTap, name, err)
	}
	return t, nil
}

// Name is the interface name the kernel gave the tap.
func (t *Tap) Name() string { return t.name }

// Offloads reports whether the tap takes checksum and TSO offloads.
func (t *Tap) Offloads() bool { return t.offloads }

// SetOffload tells the kernel which offloaded frames the reader accepts.
func (t *Tap) SetOffload(flags int) error {
	rc, err := t.f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, flags) }); err != nil {
		return err
	}
	return ierr
}

// Read reads one header+frame into buf, blocking (parked) until one arrives,
// the read deadline passes or the tap is closed.
func (t *Tap) Read(buf []byte) (int, error) { return t.f.Read(buf) }

// Writev writes one header+frame gathered from bufs.
func (t *Tap) Writev(bufs [][]byte) (int, error) {
	rc, err := t.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		n, werr = unix.Writev(int(fd), bufs)
		return !errors.Is(werr, unix.EAGAIN)
	})
	if err != nil {
		return 0, err
	}
	return n, werr
}

// Interrupt makes a blocked Read return os.ErrDeadlineExceeded; Resume
// clears that. The device uses them to stop its receive goroutine on reset
// without closing the tap.
func (t *Tap) Interrupt() error { return t.f.SetReadDeadline(time.Unix(1, 0)) }

// Resume undoes Interrupt.
func (t *Tap) Resume() error { return t.f.SetReadDeadline(time.Time{}) }

// Close closes the tap; a non-persistent interface disappears with it.
func (t *Tap) Close() error { return t.f.Close() }

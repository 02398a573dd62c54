// Package raw is the disk back-end every storage controller shares (virtio-blk,
// NVMe): a raw image file, locked against a second writer, read and written
// with vectored I/O at the offsets a request names, flushed with fdatasync,
// and deallocated by punching holes. It knows nothing of any guest protocol:
// callers check their ranges against Size, and every range is checked again
// here, so no request can reach past the image or make it grow.
package raw

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// SectorSize is the unit the image is exposed in: a size that is not a
// multiple of it hides its tail.
const SectorSize = 512

// Sentinel errors.
var (
	// ErrBusy means another process holds the image (a second VM on the same disk).
	ErrBusy = errors.New("disk image is in use by another process")
	// ErrOutOfRange is a range that is not entirely inside the visible image.
	ErrOutOfRange = errors.New("range beyond the end of the disk image")
	// ErrReadOnly is a write, discard or write-zeroes on a read-only image.
	ErrReadOnly = errors.New("disk image is read-only")
)

// Options describe one image.
type Options struct {
	Path     string
	ReadOnly bool
}

// Image is one open raw image. Its methods are safe for concurrent use:
// requests go straight to pread/pwrite at their own offsets.
type Image struct {
	f        *os.File
	fd       int
	size     uint64 // bytes, a multiple of SectorSize
	readOnly bool
	path     string
	// punch is whether the filesystem punches holes, so that a discarded
	// range reads as zeros (ATA TRIM is advertised only then).
	punch bool
}

// Open opens and locks the image (shared for read-only images, exclusive
// otherwise), as QEMU does, so two VMs never write one image.
func Open(o Options, log *slog.Logger) (*Image, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	flags, lock := os.O_RDWR, unix.LOCK_EX
	if o.ReadOnly {
		flags, lock = os.O_RDONLY, unix.LOCK_SH
	}
	f, err := os.OpenFile(o.Path, flags, 0)
	if err != nil {
		return nil, fmt.Errorf("open disk: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("disk %s: %w", o.Path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("disk %s: not a regular file (raw images only)", o.Path)
	}
	if err := unix.Flock(int(f.Fd()), lock|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("disk %s: %w", o.Path, ErrBusy)
		}
		return nil, fmt.Errorf("disk %s: lock: %w", o.Path, err)
	}
	if fi.Size()%SectorSize != 0 {
		log.Warn("disk image size is not a multiple of 512; the tail is not visible to the guest",
			"path", o.Path, "size", fi.Size())
	}
	size := uint64(fi.Size()) / SectorSize * SectorSize
	img := &Image{f: f, fd: int(f.Fd()), size: size, readOnly: o.ReadOnly, path: o.Path}
	if !o.ReadOnly {
		// A hole punched past the end of the file changes nothing (KEEP_SIZE)
		// and fails only where the filesystem cannot punch at all.
		img.punch = unix.Fallocate(img.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, fi.Size(), SectorSize) == nil
	}
	return img, nil
}

// CanPunchHoles reports whether Discard really deallocates (the image is
// writable and its filesystem punches holes): then a discarded range reads
// back as zeros.
func (i *Image) CanPunchHoles() bool { return i.punch }

// Close flushes and releases the image and its lock.
func (i *Image) Close() error {
	// Flush first: a vmm stopped by SIGINT/SIGTERM leaves the image as
	// durable as a guest flush would (issue 6).
	var err error
	if !i.readOnly {
		err = unix.Fdatasync(i.fd)
	}
	return errors.Join(err, i.f.Close())
}

// Size is the visible size in bytes (a multiple of SectorSize).
func (i *Image) Size() uint64 { return i.size }

// Sectors is the visible size in 512-byte sectors.
func (i *Image) Sectors() uint64 { return i.size / SectorSize }

// ReadOnly reports whether the image refuses writes.
func (i *Image) ReadOnly() bool { return i.readOnly }

// Path is the image's file name, for messages.
func (i *Image) Path() string { return i.path }

// check validates [off, off+n) against the visible image.
func (i *Image) check(off, n uint64) error {
	if off > i.size || n > i.size-off {
		return fmt.Errorf("%w: [%d, +%d) of %d bytes", ErrOutOfRange, off, n, i.size)
	}
	return nil
}

func total(bufs [][]byte) uint64 {
	var n uint64
	for _, b := range bufs {
		n += uint64(len(b))
	}
	return n
}

// maxIOV is the most buffers one preadv/pwritev takes (IOV_MAX).
const maxIOV = 1024

// ReadV fills bufs, in order, from the image at off.
func (i *Image) ReadV(bufs [][]byte, off uint64) error {
	if err := i.check(off, total(bufs)); err != nil {
		return err
	}
	return i.rw(bufs, off, false)
}

// WriteV writes bufs, in order, to the image at off.
func (i *Image) WriteV(bufs [][]byte, off uint64) error {
	if i.readOnly {
		return ErrReadOnly
	}
	if err := i.check(off, total(bufs)); err != nil {
		return err
	}
	return i.rw(bufs, off, true)
}

// rw moves data with one preadv/pwritev per (up to) maxIOV buffers: a
// request of many pages costs one system call, not one per page.
func (i *Image) rw(in [][]byte, o uint64, write bool) error {
	bufs := make([][]byte, 0, len(in))
	for _, b := range in {
		if len(b) > 0 {
			bufs = append(bufs, b)
		}
	}
	off := int64(o)
	for len(bufs) > 0 {
		batch := bufs[:min(len(bufs), maxIOV)]
		var n int
		var err error
		if write {
			n, err = unix.Pwritev(i.fd, batch, off)
		} else {
			n, err = unix.Preadv(i.fd, batch, off)
		}
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return err
		case n == 0:
			// The image shrank under us.
			return io.ErrUnexpectedEOF
		}
		off += int64(n)
		for n > 0 {
			if n < len(bufs[0]) {
				bufs[0] = bufs[0][n:]
				break
			}
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
	}
	return nil
}

// Flush makes every completed write durable (fdatasync).
func (i *Image) Flush() error {
	if i.readOnly {
		return nil
	}
	if err := unix.Fdatasync(i.fd); err != nil {
		return fmt.Errorf("fdatasync: %w", err)
	}
	return nil
}

// Discard deallocates [off, off+n) by punching a hole, never changing the
// file size. A filesystem that cannot punch holes makes it a successful
// no-op: discard is a hint.
func (i *Image) Discard(off, n uint64) error {
	return i.zero(off, n, true)
}

// WriteZeroes makes [off, off+n) read as zeros: a hole where the filesystem
// can punch one, else zeroed blocks.
func (i *Image) WriteZeroes(off, n uint64) error {
	return i.zero(off, n, false)
}

func (i *Image) zero(o, l uint64, discard bool) error {
	if i.readOnly {
		return ErrReadOnly
	}
	if err := i.check(o, l); err != nil {
		return err
	}
	if l == 0 {
		return nil
	}
	off, n := int64(o), int64(l)
	err := unix.Fallocate(i.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err == nil || discard && errors.Is(err, unix.EOPNOTSUPP) {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("punch hole: %w", err)
	}
	if err := unix.Fallocate(i.fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n); err == nil {
		return nil
	}
	zeros := make([]byte, min(n, 1<<20))
	for n > 0 {
		c := min(n, int64(len(zeros)))
		if _, err := i.f.WriteAt(zeros[:c], off); err != nil {
			return fmt.Errorf("write zeros: %w", err)
		}
		off += c
		n -= c
	}
	return nil
}

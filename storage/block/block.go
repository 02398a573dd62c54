// Package block is the one disk interface every storage controller uses
// (virtio-blk, NVMe, AHCI disks and CD-ROMs): a Device serves byte ranges of
// a virtual disk, whatever file format holds it. Open picks the format (raw
// or qcow2) from the file's header unless one is forced, and can put a
// private, throw-away overlay over a read-only image (snapshot mode).
//
// Probing and the raw-image trap: a raw image is guest data, and a guest can
// write anything to its first sector, the qcow2 magic and a header naming a
// host file as backing file included. If the next open probed that image, it
// would become a qcow2 and the guest could read the host file. vmm follows
// QEMU's reasoning (block/raw-format.c): an image whose format was probed as
// raw refuses guest writes to its first sector that would make it probe as
// qcow2 (the guest sees an I/O error); a user who gives format=raw takes the
// responsibility and the guest may write what it likes. An image that probes
// as qcow2 is opened as qcow2: if it is really a raw disk that a guest
// scribbled a header on under format=raw, only format=raw opens it as raw.
package block

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/vmmdev/vmm/storage/qcow2"
	"github.com/vmmdev/vmm/storage/raw"
)

// SectorSize is the unit a disk is exposed in.
const SectorSize = raw.SectorSize

// Sentinel errors, shared with the raw back-end so that callers branch on
// one value whatever the format.
var (
	// ErrBusy means another process holds the image (a second VM on the same disk).
	ErrBusy = raw.ErrBusy
	// ErrOutOfRange is a range that is not entirely inside the disk.
	ErrOutOfRange = raw.ErrOutOfRange
	// ErrReadOnly is a write, discard or write-zeroes on a read-only disk.
	ErrReadOnly = raw.ErrReadOnly
	// ErrFormatWrite is a guest write that would make a probed raw image
	// look like a qcow2 image (see the package comment).
	ErrFormatWrite = errors.New("write of an image format header to the first sector of a probed raw image")
)

// Device is one open virtual disk. Offsets and lengths are in bytes; the
// controllers keep them sector-aligned. Methods are safe for concurrent use.
type Device interface {
	// ReadV fills bufs, in order, from the disk at off.
	ReadV(bufs [][]byte, off uint64) error
	// WriteV writes bufs, in order, to the disk at off.
	WriteV(bufs [][]byte, off uint64) error
	// Flush makes every write that completed before it durable.
	Flush() error
	// Discard deallocates [off, off+n) where it can; it reads as zeros
	// afterwards when CanPunchHoles reports true.
	Discard(off, n uint64) error
	// WriteZeroes makes [off, off+n) read as zeros, deallocating where it can.
	WriteZeroes(off, n uint64) error
	// Size is the disk's size in bytes, a multiple of SectorSize.
	Size() uint64
	// Sectors is Size in 512-byte sectors.
	Sectors() uint64
	// ReadOnly reports whether the disk refuses writes.
	ReadOnly() bool
	// Path is the image's file name, for messages.
	Path() string
	// CanPunchHoles reports whether a discarded range reads back as zeros.
	CanPunchHoles() bool
	// Close flushes the disk and releases its files and locks.
	Close() error
}

// Formats.
const (
	FormatProbe = ""
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
)

// Options describe one image.
type Options struct {
	Path     string
	ReadOnly bool
	// Format is FormatRaw or FormatQcow2, or FormatProbe to read it from the header.
	Format string
	// Snapshot opens the image read-only with a shared lock and sends the
	// guest's writes to a private overlay that disappears with the process.
	Snapshot bool
	// TempDir holds snapshot overlays; empty: TempDir().
	TempDir string
}

// Open opens, locks and wraps one image.
func Open(o Options, log *slog.Logger) (Device, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	format, probed, err := detect(o.Path, o.Format)
	if err != nil {
		return nil, err
	}
	if o.Snapshot && !o.ReadOnly {
		return openSnapshot(o, format, log)
	}
	switch format {
	case FormatQcow2:
		img, err := qcow2.Open(o.Path, o.ReadOnly)
		if err != nil {
			return nil, qcow2Error(err)
		}
		return newQcow2(img, o.Path), nil
	default:
		img, err := raw.Open(raw.Options{Path: o.Path, ReadOnly: o.ReadOnly}, log)
		if err != nil {
			return nil, err
		}
		if probed && !o.ReadOnly {
			return guarded{img}, nil
		}
		return img, nil
	}
}

// Detect names the format of the image at path: FormatQcow2 when it starts
// with the qcow2 magic, else FormatRaw.
func Detect(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open disk: %w", err)
	}
	defer f.Close()
	isQcow2, err := qcow2.Detect(f)
	if err != nil {
		return "", fmt.Errorf("disk %s: %w", path, err)
	}
	if isQcow2 {
		return FormatQcow2, nil
	}
	return FormatRaw, nil
}

// detect resolves the format to open, and whether it was probed.
func detect(path, format string) (string, bool, error) {
	switch format {
	case FormatRaw, FormatQcow2:
		return format, false, nil
	case FormatProbe:
		f, err := Detect(path)
		return f, true, err
	}
	return "", false, fmt.Errorf("disk %s: unknown format %q (raw or qcow2)", path, format)
}

// qcow2Error makes qcow2's busy error the one callers branch on.
func qcow2Error(err error) error {
	if errors.Is(err, qcow2.ErrBusy) {
		return fmt.Errorf("%w: %v", ErrBusy, err)
	}
	return err
}

// TempDir is where throw-away files (snapshot overlays, cloud-init seeds)
// go: $TMPDIR, else /var/tmp as QEMU (a disk rather than the tmpfs /tmp
// often is), else /tmp where there is no /var/tmp.
func TempDir() string {
	if d := os.Getenv("TMPDIR"); d != "" {
		return d
	}
	if fi, err := os.Stat("/var/tmp"); err == nil && fi.IsDir() {
		return "/var/tmp"
	}
	return "/tmp"
}

// openSnapshot opens a throw-away qcow2 overlay over the image; the image
// and its backing chain are opened read-only with shared locks.
func openSnapshot(o Options, format string, log *slog.Logger) (Device, error) {
	base, err := filepath.Abs(o.Path)
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", o.Path, err)
	}
	dir := o.TempDir
	if dir == "" {
		dir = TempDir()
	}
	img, err := qcow2.CreateOverlay(dir, base, format)
	if err != nil {
		return nil, qcow2Error(err)
	}
	log.Debug("snapshot overlay", "disk", o.Path, "dir", dir, "format", format)
	return newQcow2(img, o.Path), nil
}

// Check opens the image read-only as Open would (its format, and for qcow2
// its header, tables and whole backing chain) and closes it again, changing
// nothing: bad images are refused before a VM exists. It returns the
// format and the disk's size in bytes.
func Check(path, format string) (string, uint64, error) {
	format, _, err := detect(path, format)
	if err != nil {
		return "", 0, err
	}
	if format == FormatQcow2 {
		img, err := qcow2.Open(path, true)
		if err != nil {
			return "", 0, qcow2Error(err)
		}
		defer img.Close()
		return format, uint64(img.Size()) / SectorSize * SectorSize, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", 0, fmt.Errorf("disk: %w", err)
	}
	return format, uint64(fi.Size()) / SectorSize * SectorSize, nil
}

package block

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmmdev/vmm/storage/qcow2"
	"github.com/vmmdev/vmm/storage/raw"
)

// qcow2Magic is how a qcow2 header starts.
const qcow2Magic = 0x514649fb

// guarded is a writable raw image whose format was probed: it refuses a
// write that would make its first bytes the qcow2 magic (package comment).
type guarded struct{ *raw.Image }

func (g guarded) WriteV(bufs [][]byte, off uint64) error {
	if off == 0 {
		var head [4]byte
		n := 0
		for _, b := range bufs {
			n += copy(head[n:], b)
			if n == len(head) {
				break
			}
		}
		if n == len(head) && binary.BigEndian.Uint32(head[:]) == qcow2Magic {
			return fmt.Errorf("disk %s: %w (open it with format=raw to allow it)", g.Path(), ErrFormatWrite)
		}
	}
	return g.Image.WriteV(bufs, off)
}

// qcowDevice serves a qcow2 image (or a snapshot overlay) as a Device.
type qcowDevice struct {
	img  *qcow2.Image
	path string
	size uint64
}

func newQcow2(img *qcow2.Image, path string) *qcowDevice {
	return &qcowDevice{img: img, path: path, size: uint64(img.Size()) / SectorSize * SectorSize}
}

func (d *qcowDevice) check(off, n uint64) error {
	if off > d.size || n > d.size-off {
		return fmt.Errorf("%w: [%d, +%d) of %d bytes", ErrOutOfRange, off, n, d.size)
	}
	return nil
}

func (d *qcowDevice) checkWrite(off, n uint64) error {
	if d.img.ReadOnly() {
		return ErrReadOnly
	}
	return d.check(off, n)
}

// ReadV reads straight into the buffers (qcow2's own vectored read): no
// gathering, one preadv per run of allocated clusters.
func (d *qcowDevice) ReadV(bufs [][]byte, off uint64) error {
	if err := d.check(off, total(bufs)); err != nil {
		return err
	}
	return d.img.ReadV(bufs, int64(off))
}

// WriteV hands the buffers to qcow2's vectored write: straight to the file
// where the clusters are allocated, gathered where they need allocating.
func (d *qcowDevice) WriteV(bufs [][]byte, off uint64) error {
	if err := d.checkWrite(off, total(bufs)); err != nil {
		return err
	}
	return writeError(d.img.WriteV(bufs, int64(off)))
}

// Discard zeroes exactly: whole clusters become zero clusters or are
// deallocated, the parts of partial ones are written with zeros, so a
// discarded range always reads as zeros (CanPunchHoles).
func (d *qcowDevice) Discard(off, n uint64) error { return d.WriteZeroes(off, n) }

func (d *qcowDevice) WriteZeroes(off, n uint64) error {
	if err := d.checkWrite(off, n); err != nil {
		return err
	}
	return writeError(d.img.WriteZeroes(int64(off), int64(n)))
}

func (d *qcowDevice) Flush() error        { return d.img.Flush() }
func (d *qcowDevice) Size() uint64        { return d.size }
func (d *qcowDevice) Sectors() uint64     { return d.size / SectorSize }
func (d *qcowDevice) ReadOnly() bool      { return d.img.ReadOnly() }
func (d *qcowDevice) Path() string        { return d.path }
func (d *qcowDevice) CanPunchHoles() bool { return !d.img.ReadOnly() }
func (d *qcowDevice) Close() error        { return d.img.Close() }

// writeError makes qcow2's read-only error the one callers branch on.
func writeError(err error) error {
	if errors.Is(err, qcow2.ErrReadOnly) {
		return fmt.Errorf("%w: %v", ErrReadOnly, err)
	}
	return err
}

func total(bufs [][]byte) uint64 {
	var n uint64
	for _, b := range bufs {
		n += uint64(len(b))
	}
	return n
}

// Package gmem writes loader output into guest memory. Guest memory is only
// ever reached through an io.WriterAt addressed by guest-physical address, so
// loaders stay testable with fake memory and every failed write carries the
// address it was for.
package gmem

import (
	"errors"
	"fmt"
	"io"
	"math"
)

// zeroChunk bounds the buffer used to clear memory, so that clearing a
// hostile-sized range never allocates more than this.
const zeroChunk = 64 << 10

// Write copies data to guest-physical address addr.
func Write(mem io.WriterAt, addr uint64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	if addr > math.MaxInt64-uint64(len(data)) {
		return fmt.Errorf("write %d bytes at %#x: address out of range", len(data), addr)
	}
	n, err := mem.WriteAt(data, int64(addr))
	if err != nil {
		return fmt.Errorf("write %d bytes at %#x: %w", len(data), addr, err)
	}
	if n != len(data) {
		return fmt.Errorf("write %d bytes at %#x: %w", len(data), addr, io.ErrShortWrite)
	}
	return nil
}

// Zero clears n bytes at guest-physical address addr.
func Zero(mem io.WriterAt, addr, n uint64) error {
	buf := make([]byte, min(n, zeroChunk))
	for n > 0 {
		c := min(n, uint64(len(buf)))
		if err := Write(mem, addr, buf[:c]); err != nil {
			return err
		}
		addr += c
		n -= c
	}
	return nil
}

// slicer is guest memory that can hand out a host view of a range (vmm's
// Memory): Copy reads a file straight into it, without a bounce buffer.
type slicer interface {
	Slice(gpa, n uint64) ([]byte, error)
}

// copyChunk is the bounce buffer Copy uses for memory that is not a slicer.
const copyChunk = 64 << 10

// Copy copies n bytes of src from offset off to guest-physical address addr.
// Into guest memory that has a host view the file is read in place (pread
// into the mapping), so no buffer of the file's size is allocated; a short
// source is an error.
func Copy(mem io.WriterAt, addr uint64, src io.ReaderAt, off int64, n uint64) error {
	if n == 0 {
		return nil
	}
	if addr > math.MaxInt64-n || off < 0 || uint64(off) > math.MaxInt64-n {
		return fmt.Errorf("copy %d bytes to %#x: address out of range", n, addr)
	}
	if s, ok := mem.(slicer); ok {
		if dst, err := s.Slice(addr, n); err == nil {
			if err := ReadFull(src, dst, off); err != nil {
				return fmt.Errorf("copy %d bytes to %#x: %w", n, addr, err)
			}
			return nil
		}
	}
	buf := make([]byte, min(n, copyChunk))
	for n > 0 {
		c := min(n, uint64(len(buf)))
		if err := ReadFull(src, buf[:c], off); err != nil {
			return fmt.Errorf("copy %d bytes to %#x: %w", c, addr, err)
		}
		if err := Write(mem, addr, buf[:c]); err != nil {
			return err
		}
		addr += c
		off += int64(c)
		n -= c
	}
	return nil
}

// ReadFull fills p from src at off; a source that ends early is
// io.ErrUnexpectedEOF (ReadAt may return io.EOF with a full count).
func ReadFull(src io.ReaderAt, p []byte, off int64) error {
	n, err := src.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

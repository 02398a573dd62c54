// Package gmem writes loader output into guest memory. Guest memory is only
// ever reached through an io.WriterAt addressed by guest-physical address, so
// loaders stay testable with fake memory and every failed write carries the
// address it was for.
package gmem

import (
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

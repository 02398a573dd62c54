// Package fakemem is a sparse guest memory for loader tests: it accepts
// writes anywhere below its size, fails beyond it like the real guest memory
// does, and only allocates pages that received non-zero bytes, so a test can
// claim gigabytes of RAM cheaply.
package fakemem

import (
	"errors"
	"fmt"
)

const pageSize = 4096

// ErrOutOfRange is returned for writes beyond the memory's size.
var ErrOutOfRange = errors.New("guest address out of range")

// Mem is sparse guest memory. The zero value has size 0.
type Mem struct {
	size  uint64
	pages map[uint64]*[pageSize]byte
	// Writes counts WriteAt calls, to check that nothing was written.
	Writes int
}

// New returns size bytes of zeroed memory.
func New(size uint64) *Mem {
	return &Mem{size: size, pages: map[uint64]*[pageSize]byte{}}
}

// WriteAt implements io.WriterAt over guest-physical addresses.
func (m *Mem) WriteAt(p []byte, off int64) (int, error) {
	m.Writes++
	if off < 0 || uint64(off) > m.size || uint64(len(p)) > m.size-uint64(off) {
		return 0, fmt.Errorf("%w: [%#x, +%#x) beyond %#x", ErrOutOfRange, off, len(p), m.size)
	}
	addr := uint64(off)
	for i := 0; i < len(p); {
		pg, in := addr/pageSize, addr%pageSize
		n := min(uint64(len(p)-i), pageSize-in)
		chunk := p[i : i+int(n)]
		page := m.pages[pg]
		if page == nil && !allZero(chunk) {
			page = new([pageSize]byte)
			m.pages[pg] = page
		}
		if page != nil {
			copy(page[in:], chunk)
		}
		i += int(n)
		addr += n
	}
	return len(p), nil
}

// Read returns n bytes at addr; it panics on a range beyond the size, which in
// a test is a bug of the test.
func (m *Mem) Read(addr, n uint64) []byte {
	if addr > m.size || n > m.size-addr {
		panic(fmt.Sprintf("fakemem: read [%#x, +%#x) beyond %#x", addr, n, m.size))
	}
	out := make([]byte, n)
	for i := uint64(0); i < n; {
		pg, in := (addr+i)/pageSize, (addr+i)%pageSize
		c := min(n-i, pageSize-in)
		if page := m.pages[pg]; page != nil {
			copy(out[i:i+c], page[in:in+c])
		}
		i += c
	}
	return out
}

// Dirty reports whether any byte in [addr, addr+n) is non-zero.
func (m *Mem) Dirty(addr, n uint64) bool {
	return !allZero(m.Read(addr, n))
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Package pattern generates the deterministic byte streams the e2e tests
// write to disks and send over the network: any range of a stream can be
// produced or checked on its own, so the outer test host and the guest agent
// agree on the content without shipping it.
package pattern

import (
	"encoding/binary"
	"io"
)

// word is the 8-byte word at index i of stream seed (splitmix64).
func word(seed uint64, i uint64) uint64 {
	z := seed + (i+1)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Fill writes the bytes of stream seed starting at offset off into b.
func Fill(b []byte, seed uint64, off int64) {
	var w [8]byte
	for len(b) > 0 {
		i, r := uint64(off)/8, int(uint64(off)%8)
		binary.LittleEndian.PutUint64(w[:], word(seed, i))
		n := copy(b, w[r:])
		b, off = b[n:], off+int64(n)
	}
}

// Mismatch returns the offset of the first byte of b that differs from
// stream seed at offset off, or -1 when all match.
func Mismatch(b []byte, seed uint64, off int64) int64 {
	want := make([]byte, min(len(b), 64<<10))
	for pos := 0; pos < len(b); pos += len(want) {
		chunk := b[pos:min(pos+len(want), len(b))]
		Fill(want[:len(chunk)], seed, off+int64(pos))
		for i := range chunk {
			if chunk[i] != want[i] {
				return off + int64(pos+i)
			}
		}
	}
	return -1
}

// Reader is n bytes of stream seed from offset 0.
type Reader struct {
	seed   uint64
	off, n int64
}

// NewReader returns a reader of the first n bytes of stream seed.
func NewReader(seed uint64, n int64) *Reader { return &Reader{seed: seed, n: n} }

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)]
	Fill(p, r.seed, r.off)
	r.off += int64(len(p))
	return len(p), nil
}

// Checker is an io.Writer that compares what it is given with stream seed.
type Checker struct {
	seed uint64
	off  int64
	bad  int64
}

// NewChecker returns a checker at offset 0 of stream seed.
func NewChecker(seed uint64) *Checker { return &Checker{seed: seed, bad: -1} }

// Write implements io.Writer; it never fails, it records the first mismatch.
func (c *Checker) Write(p []byte) (int, error) {
	if c.bad < 0 {
		c.bad = Mismatch(p, c.seed, c.off)
	}
	c.off += int64(len(p))
	return len(p), nil
}

// Result is the number of bytes checked and the first bad offset (-1: none).
func (c *Checker) Result() (n, firstBad int64) { return c.off, c.bad }

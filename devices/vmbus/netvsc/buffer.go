package netvsc

import (
	"fmt"

	"github.com/vmmdev/vmm/devices/vmbus/gpadl"
)

const pageSize = 4096

// Memory is guest memory as the VMM maps it.
type Memory interface {
	Slice(gpa, n uint64) ([]byte, error)
}

// guestBuf is a buffer the guest shares through a GPADL (the receive or
// the send buffer): its pages resolved once, every access bounds-checked.
// It starts at byte start of its first page (iPXE describes a buffer
// where its allocator put it; Linux's are page-aligned).
type guestBuf struct {
	pages [][]byte
	size  uint32
	start uint32
}

func newGuestBuf(mem Memory, g gpadl.GPADL) (*guestBuf, error) {
	if g.ByteOffset >= pageSize {
		return nil, fmt.Errorf("buffer GPADL starts at byte %d of its first page", g.ByteOffset)
	}
	b := &guestBuf{size: g.ByteCount, start: g.ByteOffset, pages: make([][]byte, len(g.PFNs))}
	for i, pfn := range g.PFNs {
		p, err := mem.Slice(pfn*pageSize, pageSize)
		if err != nil {
			return nil, fmt.Errorf("buffer page %d: %w", i, err)
		}
		b.pages[i] = p
	}
	if uint64(b.start)+uint64(b.size) > uint64(len(b.pages))*pageSize {
		return nil, fmt.Errorf("buffer of %d bytes in %d pages", b.size, len(b.pages))
	}
	return b, nil
}

// in reports whether [off, off+n) lies inside the buffer.
func (b *guestBuf) in(off, n uint32) bool { return uint64(off)+uint64(n) <= uint64(b.size) }

// read copies len(dst) bytes at off out of the buffer.
func (b *guestBuf) read(off uint32, dst []byte) error {
	if !b.in(off, uint32(len(dst))) || uint64(len(dst)) > uint64(b.size) {
		return fmt.Errorf("[%d, +%d) outside a %d-byte buffer", off, len(dst), b.size)
	}
	off += b.start // in: off+len(dst) <= size, so no overflow
	for len(dst) > 0 {
		n := copy(dst, b.pages[off/pageSize][off%pageSize:])
		dst, off = dst[n:], off+uint32(n)
	}
	return nil
}

// write copies src into the buffer at off.
func (b *guestBuf) write(off uint32, src []byte) error {
	if !b.in(off, uint32(len(src))) || uint64(len(src)) > uint64(b.size) {
		return fmt.Errorf("[%d, +%d) outside a %d-byte buffer", off, len(src), b.size)
	}
	off += b.start
	for len(src) > 0 {
		n := copy(b.pages[off/pageSize][off%pageSize:], src)
		src, off = src[n:], off+uint32(n)
	}
	return nil
}

// gatherGPA copies the bytes of a GPA_DIRECT packet's ranges (header:
// {u32 reserved, u32 rangecount, ranges {u32 len, u32 offset, u64 pfn[]}})
// into dst, up to max bytes in all.
func gatherGPA(mem Memory, hdr []byte, max int) ([]byte, error) {
	if len(hdr) < 8 {
		return nil, fmt.Errorf("GPA direct header of %d bytes", len(hdr))
	}
	count := le32(hdr[4:])
	rest := hdr[8:]
	var out []byte
	for i := uint32(0); i < count; i++ {
		if len(rest) < 8 {
			return nil, fmt.Errorf("GPA range %d: header ends", i)
		}
		n, off := uint64(le32(rest)), uint64(le32(rest[4:]))
		if off >= pageSize {
			return nil, fmt.Errorf("GPA range %d: offset %d", i, off)
		}
		if uint64(len(out))+n > uint64(max) {
			return nil, fmt.Errorf("GPA ranges of more than %d bytes", max)
		}
		pages := (off + n + pageSize - 1) / pageSize
		if uint64(len(rest)-8) < pages*8 {
			return nil, fmt.Errorf("GPA range %d: %d PFNs past the header", i, pages)
		}
		for p := uint64(0); p < pages; p++ {
			pfn := le64(rest[8+8*p:])
			if pfn >= 1<<52 {
				return nil, fmt.Errorf("GPA range %d: PFN %#x", i, pfn)
			}
			lo, hi := uint64(0), uint64(pageSize)
			if p == 0 {
				lo = off
			}
			if p == pages-1 {
				hi = (off+n-1)%pageSize + 1
			}
			b, err := mem.Slice(pfn*pageSize+lo, hi-lo)
			if err != nil {
				return nil, fmt.Errorf("GPA range %d: %w", i, err)
			}
			out = append(out, b...)
		}
		rest = rest[8+8*pages:]
	}
	return out, nil
}

package qcow2

import (
	"encoding/binary"
	"fmt"
)

// Refcounts. Everything here runs with mu held exclusively on a writable
// image. Refcount blocks are cached in img.rb and written through.

// maxCachedBlocks bounds the refcount block cache; it is dropped whole when
// full (blocks are re-read from the file on demand).
const maxCachedBlocks = 4096

// maxScanBeyondEOF is how far past the end of the file findFree looks for
// a free cluster among clusters that refcounts say are in use.
const maxScanBeyondEOF = 1 << 16

// rcWidth is the width of one refcount in bits.
func (img *Image) rcWidth() uint64 { return 1 << img.h.refcountOrder }

// rcShift is log2 of the clusters one refcount block covers.
func (img *Image) rcShift() uint32 { return img.bits + 3 - img.h.refcountOrder }

// block returns refcount block i of the table (nil if not allocated).
func (img *Image) block(i uint64) ([]byte, uint64, error) {
	if i >= uint64(len(img.rt)) {
		return nil, 0, nil
	}
	off := img.rt[i] &^ 511
	if off == 0 {
		return nil, 0, nil
	}
	if off%img.cs != 0 {
		return nil, 0, fmt.Errorf("%w: refcount table entry %d (%#x) not aligned", ErrCorrupt, i, img.rt[i])
	}
	if b, ok := img.rb[off]; ok {
		return b, off, nil
	}
	b := make([]byte, img.cs)
	if err := img.preadMeta("refcount block", b, off); err != nil {
		return nil, 0, err
	}
	if len(img.rb) >= maxCachedBlocks {
		clear(img.rb)
	}
	img.rb[off] = b
	return b, off, nil
}

// getRC reads refcount i of a block.
func (img *Image) getRC(b []byte, i uint64) uint64 {
	switch w := img.rcWidth(); w {
	case 8:
		return uint64(b[i])
	case 16:
		return uint64(binary.BigEndian.Uint16(b[i*2:]))
	case 32:
		return uint64(binary.BigEndian.Uint32(b[i*4:]))
	case 64:
		return binary.BigEndian.Uint64(b[i*8:])
	default: // 1, 2, 4 bits, least significant first (as QEMU packs them)
		bit := i * w
		return uint64(b[bit/8]>>(bit%8)) & (1<<w - 1)
	}
}

// setRC writes refcount i of a block.
func (img *Image) setRC(b []byte, i, v uint64) {
	switch w := img.rcWidth(); w {
	case 8:
		b[i] = byte(v)
	case 16:
		binary.BigEndian.PutUint16(b[i*2:], uint16(v))
	case 32:
		binary.BigEndian.PutUint32(b[i*4:], uint32(v))
	case 64:
		binary.BigEndian.PutUint64(b[i*8:], v)
	default:
		bit := i * w
		mask := byte(1<<w-1) << (bit % 8)
		b[bit/8] = b[bit/8]&^mask | byte(v)<<(bit%8)&mask
	}
}

// refcount returns the refcount of cluster c (0 where no block covers it).
func (img *Image) refcount(c uint64) (uint64, error) {
	b, _, err := img.block(c >> img.rcShift())
	if err != nil || b == nil {
		return 0, err
	}
	return img.getRC(b, c&(1<<img.rcShift()-1)), nil
}

// addRef adds delta to the refcounts of clusters [c, c+n), whose blocks
// exist, writing each changed block's bytes through.
func (img *Image) addRef(c, n uint64, delta int) error {
	shift := img.rcShift()
	limit := uint64(1)<<img.rcWidth() - 1
	if img.rcWidth() == 64 {
		limit = ^uint64(0)
	}
	for n > 0 {
		b, off, err := img.block(c >> shift)
		if err != nil {
			return err
		}
		if b == nil {
			return fmt.Errorf("%w: no refcount block for cluster %d", ErrCorrupt, c)
		}
		first := c & (1<<shift - 1)
		cnt := min(n, 1<<shift-first)
		for i := first; i < first+cnt; i++ {
			v := img.getRC(b, i)
			switch {
			case delta < 0 && v == 0:
				return fmt.Errorf("%w: freeing cluster %d whose refcount is 0", ErrCorrupt, c+i-first)
			case delta > 0 && v == limit:
				return fmt.Errorf("%w: refcount of cluster %d overflows", ErrCorrupt, c+i-first)
			}
			img.setRC(b, i, uint64(int64(v)+int64(delta)))
		}
		w := img.rcWidth()
		lo, hi := first*w/8, divCeil((first+cnt)*w, 8)
		if err := img.pwrite(b[lo:hi], off+lo); err != nil {
			delete(img.rb, off) // the cache may now differ from the file
			return fmt.Errorf("write refcount block: %w", err)
		}
		if delta < 0 {
			img.freeHint = min(img.freeHint, c)
		}
		c += cnt
		n -= cnt
	}
	return nil
}

// free drops one reference to each cluster overlapping [off, off+n) bytes.
func (img *Image) free(off, n uint64) error {
	first := off >> img.bits
	last := (off + n - 1) >> img.bits
	return img.addRef(first, last-first+1, -1)
}

// findFree returns the first free cluster at or after the hint and how
// many free clusters follow it, up to n. Clusters no refcount block covers
// are free.
func (img *Image) findFree(n uint64) (start, run uint64, err error) {
	shift := img.rcShift()
	// Past the end of the file only leaks of a crash can be counted; a
	// table that counts much more is hostile, and scanning it could take
	// hours.
	limit := img.fileEnd.Load()>>img.bits + maxScanBeyondEOF
	for c := img.freeHint; run < n; c++ {
		if c >= limit && run == 0 {
			return 0, 0, fmt.Errorf("%w: refcounts claim clusters far beyond the end of the file (repair with qemu-img check -r all)", ErrCorrupt)
		}
		if c>>shift >= uint64(len(img.rt)) {
			if run == 0 {
				start = c
			}
			return start, n, nil // everything from here on is free
		}
		rc, err := img.refcount(c)
		if err != nil {
			return 0, 0, err
		}
		switch {
		case rc == 0 && run == 0:
			start, run = c, 1
		case rc == 0:
			run++
		case run > 0:
			return start, run, nil
		}
	}
	return start, run, nil
}

// alloc allocates up to n contiguous clusters (refcount 1, written through)
// and returns the host offset of the first and how many it got (at least
// one). The caller makes the refcounts durable (sync) before anything
// points at the clusters.
func (img *Image) alloc(n uint64) (off, got uint64, err error) {
	shift := img.rcShift()
	for {
		c, run, err := img.findFree(n)
		if err != nil {
			return 0, 0, err
		}
		if (c+run)<<img.bits > maxVirtualSize {
			return 0, 0, fmt.Errorf("%w: image file would exceed %d bytes", ErrUnsupported, uint64(maxVirtualSize))
		}
		grew := false
		for i := c >> shift; i <= (c+run-1)>>shift; i++ {
			if i >= uint64(len(img.rt)) {
				if err := img.growTable(i); err != nil {
					return 0, 0, err
				}
				grew = true
				break
			}
			if img.rt[i] == 0 {
				if err := img.newBlock(i); err != nil {
					return 0, 0, err
				}
				grew = true
				break
			}
		}
		if grew {
			continue // the new metadata took clusters: search again
		}
		if err := img.addRef(c, run, 1); err != nil {
			return 0, 0, err
		}
		img.freeHint = c + run
		return c << img.bits, run, nil
	}
}

// newBlock creates refcount block i of the table. No cluster it covers is
// in use (its entry is 0), so the block lives in its own first cluster and
// counts itself.
func (img *Image) newBlock(i uint64) error {
	c := i << img.rcShift()
	if c == 0 {
		return fmt.Errorf("%w: no refcount block covers the header", ErrCorrupt)
	}
	b := make([]byte, img.cs)
	img.setRC(b, 0, 1)
	off := c << img.bits
	if err := img.pwrite(b, off); err != nil {
		return fmt.Errorf("write refcount block: %w", err)
	}
	if err := img.sync(); err != nil {
		return err
	}
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], off)
	if err := img.pwrite(e[:], img.h.refTableOffset+i*8); err != nil {
		return fmt.Errorf("write refcount table: %w", err)
	}
	img.rt[i] = off
	img.rb[off] = b
	return nil
}

// growTable makes the refcount table cover block index need. The new table
// and the blocks that count it go after everything the old table covers:
// blocks first, then the table, all counted by those blocks. Once durable,
// the header is switched to the new table with one write of 12 bytes in
// the first sector, and the old table is freed.
func (img *Image) growTable(need uint64) error {
	shift := img.rcShift()
	old := uint64(len(img.rt))
	e := old << shift // first cluster no block covers
	if e == 0 {
		return fmt.Errorf("%w: empty refcount table", ErrCorrupt)
	}
	// Fixed point: k blocks and t table clusters from e must be covered by
	// the k blocks, and the table must hold need and the k blocks.
	k, t := uint64(1), uint64(1)
	for {
		end := e + k + t
		k2 := (end-1)>>shift - old + 1
		entries := max(need+1, old+k2, 2*old)
		t2 := divCeil(entries*8, img.cs)
		if k2 <= k && t2 <= t {
			break
		}
		k, t = max(k, k2), max(t, t2)
	}
	if t*img.cs > maxRefTableBytes {
		return fmt.Errorf("%w: refcount table would exceed %d bytes", ErrUnsupported, maxRefTableBytes)
	}
	rt := make([]uint64, t*img.cs/8)
	copy(rt, img.rt)
	blocks := make([][]byte, k)
	for j := range k {
		blocks[j] = make([]byte, img.cs)
		rt[old+j] = (e + j) << img.bits
	}
	for c := e; c < e+k+t; c++ {
		img.setRC(blocks[(c>>shift)-old], c&(1<<shift-1), 1)
	}
	for j, b := range blocks {
		if err := img.pwrite(b, (e+uint64(j))<<img.bits); err != nil {
			return fmt.Errorf("write refcount block: %w", err)
		}
	}
	raw := make([]byte, t*img.cs)
	for i, v := range rt {
		binary.BigEndian.PutUint64(raw[i*8:], v)
	}
	tableOff := (e + k) << img.bits
	if err := img.pwrite(raw, tableOff); err != nil {
		return fmt.Errorf("write refcount table: %w", err)
	}
	if err := img.sync(); err != nil {
		return err
	}
	var hdr [12]byte
	binary.BigEndian.PutUint64(hdr[0:], tableOff)
	binary.BigEndian.PutUint32(hdr[8:], uint32(t))
	if err := img.pwrite(hdr[:], offRefTable); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	if err := img.sync(); err != nil {
		return err
	}
	oldOff, oldClusters := img.h.refTableOffset, uint64(img.h.refTableCluster)
	img.h.refTableOffset, img.h.refTableCluster = tableOff, uint32(t)
	img.rt = rt
	for j, b := range blocks {
		img.rb[(e+uint64(j))<<img.bits] = b
	}
	return img.free(oldOff, oldClusters*img.cs)
}

package qcow2

import (
	"encoding/binary"
	"fmt"
)

// maxRunBytes bounds the buffer one allocating write assembles.
const maxRunBytes = 8 << 20

// maxGatherBytes bounds the buffer a scattered allocating write is gathered
// in (one mapping update per cluster run, not per buffer); a larger one is
// written buffer by buffer.
const maxGatherBytes = 4 << 20

func (img *Image) checkWrite(what string, off, n int64) error {
	if img.readOnly {
		return fmt.Errorf("qcow2 %s: %s: %w", img.path, what, ErrReadOnly)
	}
	if off < 0 || n < 0 || uint64(off) > img.size || uint64(n) > img.size-uint64(off) {
		return fmt.Errorf("qcow2 %s: %s of %d bytes at %d: %w (%d bytes)", img.path, what, n, off, ErrRange, img.size)
	}
	return nil
}

// WriteAt writes p to the virtual disk at off. Writes never grow the disk:
// one that does not fit fails with ErrRange and writes nothing.
func (img *Image) WriteAt(p []byte, off int64) (int, error) {
	if err := img.WriteV([][]byte{p}, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteV writes bufs, one after the other, to the virtual disk at off, as
// WriteAt of their concatenation would. Where every cluster is allocated to
// the image alone the buffers go straight to the file (one pwritev per
// run of clusters); otherwise they are gathered and written as WriteAt
// writes.
func (img *Image) WriteV(bufs [][]byte, off int64) error {
	var n uint64
	for _, b := range bufs {
		n += uint64(len(b))
	}
	if err := img.checkWrite("write", off, int64(n)); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	img.mu.RLock()
	done, err := img.writeInPlace(bufs, uint64(off), n)
	img.mu.RUnlock()
	if !done && err == nil && len(bufs) > 1 && n > maxGatherBytes {
		for _, b := range bufs {
			if err := img.WriteV([][]byte{b}, off); err != nil {
				return err
			}
			off += int64(len(b))
		}
		return nil
	}
	if !done && err == nil {
		p := bufs[0]
		if len(bufs) > 1 {
			p = make([]byte, 0, n)
			for _, b := range bufs {
				p = append(p, b...)
			}
		}
		img.mu.Lock()
		err = img.segments(uint64(off), n, func(so, sn, gc, count uint64) error {
			return img.writeSegment(p[so-uint64(off):so-uint64(off)+sn], so, gc, count)
		})
		img.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("qcow2 %s: write %d bytes at %d: %w", img.path, n, off, err)
	}
	return nil
}

// writeInPlace writes bufs (n bytes in all) if every cluster they touch is
// already allocated to this image alone (the common case once a disk is
// warm); mu held shared, which keeps the mapping fixed while the data is
// written. It reports false without writing anything when some cluster
// needs allocation.
func (img *Image) writeInPlace(bufs [][]byte, off, n uint64) (bool, error) {
	type ext struct{ host, n uint64 }
	var exts []ext
	ok := true
	err := img.segments(off, n, func(so, sn, gc, count uint64) error {
		if !ok {
			return nil
		}
		es, err := img.entries(gc, count)
		if err != nil {
			return err
		}
		for i, e := range es {
			k, host, err := img.classify(e)
			if err != nil {
				return err
			}
			if k != kNormal || e&flagCopied == 0 {
				ok = false
				return nil
			}
			start := max(so, (gc+uint64(i))<<img.bits)
			end := min(so+sn, (gc+uint64(i)+1)<<img.bits)
			h := host + start&(img.cs-1)
			if l := len(exts); l > 0 && exts[l-1].host+exts[l-1].n == h {
				exts[l-1].n += end - start
			} else {
				exts = append(exts, ext{h, end - start})
			}
		}
		return nil
	})
	if err != nil || !ok {
		return false, err
	}
	// The extents follow each other in the guest's order.
	cur := iovCursor{bufs: bufs}
	var src [][]byte
	for _, x := range exts {
		src = cur.take(src[:0], x.n)
		if err := img.pwritev(src, x.host); err != nil {
			return true, err
		}
	}
	return true, nil
}

// writeSegment writes p at guest offset off, all inside one L2 table
// (clusters gc..gc+count-1); mu held exclusively.
//
// Order, for a process killed or a power cut at any point: new clusters'
// data and refcounts first, then a sync, then the L2 entries that point at
// them, then (after another sync) the references of the clusters they
// replaced are dropped. A crash leaks clusters at worst.
func (img *Image) writeSegment(p []byte, off, gc, count uint64) error {
	t, err := img.writableL2(gc / (img.cs / 8))
	if err != nil {
		return err
	}
	es, err := img.entries(gc, count)
	if err != nil {
		return err
	}
	newEs := append([]uint64(nil), es...)
	var frees []oldRef
	synced := false // whether new refcounts and data need a sync before the L2 write

	// piece returns the part of p inside guest cluster i of the segment.
	piece := func(i uint64) (data []byte, inner uint64) {
		start := max(off, (gc+i)<<img.bits)
		end := min(off+uint64(len(p)), (gc+i+1)<<img.bits)
		return p[start-off : end-off], start & (img.cs - 1)
	}

	maxRun := max(1, maxRunBytes/img.cs)
	for i := uint64(0); i < count; {
		k, host, err := img.classify(es[i])
		if err != nil {
			return err
		}
		data, inner := piece(i)
		switch {
		case k == kNormal && es[i]&flagCopied != 0:
			if err := img.pwrite(data, host+inner); err != nil {
				return err
			}
			i++
			continue
		case k == kZero && host != 0 && es[i]&flagCopied != 0:
			// A preallocated zero cluster: fill it, then clear the flag.
			buf := make([]byte, img.cs)
			copy(buf[inner:], data)
			if err := img.pwrite(buf, host); err != nil {
				return err
			}
			newEs[i] = host | flagCopied
			synced = true
			i++
			continue
		}
		// A run of clusters that need new host clusters.
		j := i + 1
		for ; j < count && j-i < maxRun; j++ {
			k2, h2, err := img.classify(es[j])
			if err != nil {
				return err
			}
			if k2 == kNormal && es[j]&flagCopied != 0 || k2 == kZero && h2 != 0 && es[j]&flagCopied != 0 {
				break
			}
		}
		n := j - i
		buf := make([]byte, n*img.cs)
		for c := i; c < j; c++ {
			cb := buf[(c-i)*img.cs : (c-i+1)*img.cs]
			d, in := piece(c)
			if uint64(len(d)) < img.cs {
				if err := img.oldCluster(es[c], gc+c, cb); err != nil {
					return err
				}
			}
			copy(cb[in:], d)
			ck, ch, _ := img.classify(es[c])
			switch {
			case ck == kCompressed:
				o, l := img.compressedExtent(es[c])
				frees = append(frees, oldRef{o &^ 511, l + o%512})
			case ch != 0:
				frees = append(frees, oldRef{ch, img.cs})
			}
		}
		for done := uint64(0); done < n; {
			h, got, err := img.alloc(n - done)
			if err != nil {
				return err
			}
			if err := img.pwrite(buf[done*img.cs:(done+got)*img.cs], h); err != nil {
				return err
			}
			for c := range got {
				newEs[i+done+c] = (h + c*img.cs) | flagCopied
			}
			done += got
		}
		synced = true
		i = j
	}
	if !synced {
		return nil
	}
	if err := img.sync(); err != nil {
		return err
	}
	return img.commitEntries(t, gc, es, newEs, frees)
}

// oldCluster fills buf with what guest cluster gc (L2 entry e) reads now:
// the bytes a partial write must preserve.
func (img *Image) oldCluster(e, gc uint64, buf []byte) error {
	k, host, err := img.classify(e)
	if err != nil {
		return err
	}
	switch k {
	case kUnalloc:
		return img.readBacking(buf, gc<<img.bits)
	case kZero:
		clear(buf)
		return nil
	case kCompressed:
		return img.readCompressed(e, buf)
	}
	return img.pread(buf, host)
}

// oldRef is a host range an L2 update stops referencing.
type oldRef struct{ off, n uint64 }

// commitEntries writes the changed L2 entries, then, once that is on disk,
// drops the references of what they no longer point to: a crash in
// between leaks clusters rather than freeing ones still in use.
func (img *Image) commitEntries(t, gc uint64, old, new []uint64, frees []oldRef) error {
	if err := img.writeEntries(t, gc, old, new); err != nil {
		return err
	}
	if len(frees) == 0 {
		return nil
	}
	if err := img.sync(); err != nil {
		return err
	}
	for _, f := range frees {
		if err := img.free(f.off, f.n); err != nil {
			return err
		}
	}
	return nil
}

// writeEntries writes the L2 entries of clusters gc.. that changed from
// old to new, as one write spanning the first to the last changed entry.
func (img *Image) writeEntries(t, gc uint64, old, new []uint64) error {
	lo, hi := -1, -1
	for i := range new {
		if new[i] != old[i] {
			if lo < 0 {
				lo = i
			}
			hi = i
		}
	}
	if lo < 0 {
		return nil
	}
	raw := make([]byte, (hi-lo+1)*8)
	for i := lo; i <= hi; i++ {
		binary.BigEndian.PutUint64(raw[(i-lo)*8:], new[i])
	}
	l2n := img.cs / 8
	// The file first, then the cached table (which old may be part of);
	// after a failed write nobody knows what the file holds: forget it.
	if err := img.pwrite(raw, t+(gc%l2n+uint64(lo))*8); err != nil {
		img.l2.drop(gc / l2n)
		return fmt.Errorf("write L2 table: %w", err)
	}
	if es := img.l2.get(gc/l2n, t); es != nil {
		copy(es[gc%l2n+uint64(lo):], new[lo:hi+1])
	}
	return nil
}

// writableL2 returns the host offset of L1 entry i's L2 table, allocating
// one (or copying a shared one) first. The new table and its refcount are
// durable before the L1 entry points at it.
func (img *Image) writableL2(i uint64) (uint64, error) {
	t, err := img.l2Table(i)
	if err != nil {
		return 0, err
	}
	if t != 0 && img.l1[i]&flagCopied != 0 {
		return t, nil
	}
	buf := make([]byte, img.cs)
	if t != 0 {
		if err := img.preadMeta("L2 table", buf, t); err != nil {
			return 0, err
		}
	}
	nt, _, err := img.alloc(1)
	if err != nil {
		return 0, err
	}
	if err := img.pwrite(buf, nt); err != nil {
		return 0, fmt.Errorf("write L2 table: %w", err)
	}
	if err := img.sync(); err != nil {
		return 0, err
	}
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], nt|flagCopied)
	if err := img.pwrite(e[:], img.h.l1Offset+i*8); err != nil {
		return 0, fmt.Errorf("write L1 table: %w", err)
	}
	img.l1[i] = nt | flagCopied
	img.l2.put(i, nt, decodeL2(buf))
	if t != 0 {
		if err := img.sync(); err != nil {
			return 0, err
		}
		if err := img.free(t, img.cs); err != nil {
			return 0, err
		}
	}
	return nt, nil
}

// WriteZeroes makes [off, off+n) read as zeros. Whole clusters are
// deallocated (v3: the zero flag, or unallocated where no backing file shows
// through); the parts of partial clusters are written with zeros.
func (img *Image) WriteZeroes(off, n int64) error {
	if err := img.checkWrite("write zeroes", off, n); err != nil {
		return err
	}
	return img.zero(uint64(off), uint64(n), true)
}

// Discard deallocates the whole clusters inside [off, off+n); they read as
// zeros afterwards. Partial clusters are left as they are (a discard is a
// hint), as are all clusters of a v2 image with a backing file (v2 has no
// zero flag to hide the backing file's data).
func (img *Image) Discard(off, n int64) error {
	if err := img.checkWrite("discard", off, n); err != nil {
		return err
	}
	return img.zero(uint64(off), uint64(n), false)
}

func (img *Image) zero(off, n uint64, exact bool) error {
	end := off + n
	first := divCeil(off, img.cs) * img.cs
	last := end &^ (img.cs - 1)
	if end == img.size {
		last = divCeil(end, img.cs) * img.cs // the disk's last, partial cluster counts as whole
	}
	if first >= last {
		first, last = end, end
	}
	if exact {
		if err := img.writeZeroBytes(off, first-off); err != nil {
			return err
		}
		if err := img.writeZeroBytes(last, end-min(last, end)); err != nil {
			return err
		}
	}
	if first >= last {
		return nil
	}
	if img.h.version == 2 && img.backing != nil {
		if exact {
			return img.writeZeroBytes(first, min(last, end)-first)
		}
		return nil
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	err := img.segments(first, min(last, img.size)-first, func(_, _, gc, count uint64) error {
		return img.zeroClusters(gc, count)
	})
	if err != nil {
		return fmt.Errorf("qcow2 %s: zero %d bytes at %d: %w", img.path, last-first, first, err)
	}
	return nil
}

// writeZeroBytes writes real zeros, a cluster at a time.
func (img *Image) writeZeroBytes(off, n uint64) error {
	if n == 0 {
		return nil
	}
	z := make([]byte, min(n, max(img.cs, 1<<20)))
	for n > 0 {
		c := min(n, uint64(len(z)))
		if _, err := img.WriteAt(z[:c], int64(off)); err != nil {
			return err
		}
		off += c
		n -= c
	}
	return nil
}

// zeroClusters deallocates guest clusters [gc, gc+count) of one L2 table:
// their entries are written first, and the clusters they held are freed
// only once that is durable.
func (img *Image) zeroClusters(gc, count uint64) error {
	want := uint64(0)
	if img.backing != nil {
		want = flagZero
	}
	t, err := img.l2Table(gc / (img.cs / 8))
	if err != nil {
		return err
	}
	if t == 0 && want == 0 {
		return nil // nothing allocated, nothing behind
	}
	if t, err = img.writableL2(gc / (img.cs / 8)); err != nil {
		return err
	}
	es, err := img.entries(gc, count)
	if err != nil {
		return err
	}
	newEs := make([]uint64, count)
	var frees []oldRef
	for i, e := range es {
		newEs[i] = want
		k, host, err := img.classify(e)
		if err != nil {
			return err
		}
		switch {
		case k == kCompressed:
			o, l := img.compressedExtent(e)
			frees = append(frees, oldRef{o &^ 511, l + o%512})
		case host != 0:
			frees = append(frees, oldRef{host, img.cs})
		}
	}
	return img.commitEntries(t, gc, es, newEs, frees)
}

package qcow2

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// kind is what an L2 entry says about a guest cluster.
type kind int

const (
	kUnalloc    kind = iota // read from the backing file (or zeros)
	kZero                   // reads zeros; host may hold a preallocated cluster
	kNormal                 // data at host
	kCompressed             // compressed data described by the entry
)

// classify decodes an L2 entry.
func (img *Image) classify(e uint64) (k kind, host uint64, err error) {
	if e&flagCompressed != 0 {
		return kCompressed, 0, nil
	}
	host = e & offsetMask
	if host%img.cs != 0 {
		return 0, 0, fmt.Errorf("%w: L2 entry %#x: cluster offset not aligned", ErrCorrupt, e)
	}
	switch {
	case e&flagZero != 0:
		return kZero, host, nil
	case host == 0:
		return kUnalloc, 0, nil
	}
	return kNormal, host, nil
}

// l2Table returns the host offset of the L2 table of L1 index i (0: none).
func (img *Image) l2Table(i uint64) (uint64, error) {
	if i >= uint64(len(img.l1)) {
		return 0, fmt.Errorf("%w: L1 index %d beyond the table", ErrCorrupt, i)
	}
	off := img.l1[i] & offsetMask
	if off%img.cs != 0 {
		return 0, fmt.Errorf("%w: L1 entry %d (%#x): L2 table offset not aligned", ErrCorrupt, i, img.l1[i])
	}
	return off, nil
}

// entries returns the L2 entries of the n guest clusters from gc, which lie
// in one L2 table; all zero when the table is not allocated. The slice may
// be the cached table's (l2Cache): read it with mu held, never change it.
func (img *Image) entries(gc, n uint64) ([]uint64, error) {
	l2n := img.cs / 8
	i, first := gc/l2n, gc%l2n
	t, err := img.l2Table(i)
	if err != nil {
		return nil, err
	}
	if t == 0 {
		return make([]uint64, n), nil
	}
	if es := img.l2.get(i, t); es != nil {
		return es[first : first+n : first+n], nil
	}
	raw := make([]byte, img.cs)
	if got, _ := img.f.ReadAt(raw, int64(t)); got == len(raw) {
		es := decodeL2(raw)
		img.l2.put(i, t, es)
		return es[first : first+n : first+n], nil
	}
	// A table cut short by the end of the file: only the entries asked
	// for must be in it (and it is not cached).
	raw = raw[:n*8]
	if err := img.preadMeta("L2 table", raw, t+first*8); err != nil {
		return nil, err
	}
	return decodeL2(raw), nil
}

// segments splits [off, off+n) at L2 table boundaries and calls fn for each
// piece with its first guest cluster and cluster count.
func (img *Image) segments(off, n uint64, fn func(off, n, gc, count uint64) error) error {
	span := img.cs * (img.cs / 8) // guest bytes one L2 table maps
	for n > 0 {
		l := min(n, span-off%span)
		gc := off >> img.bits
		count := (off+l-1)>>img.bits - gc + 1
		if err := fn(off, l, gc, count); err != nil {
			return err
		}
		off += l
		n -= l
	}
	return nil
}

// ReadAt reads len(p) bytes of the virtual disk at off; it returns io.EOF
// with the bytes that precede the end of the disk.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("qcow2 %s: read at negative offset %d", img.path, off)
	}
	if uint64(off) >= img.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := min(uint64(len(p)), img.size-uint64(off))
	img.mu.RLock()
	err := img.read(p[:n], uint64(off))
	img.mu.RUnlock()
	if err != nil {
		return 0, fmt.Errorf("qcow2 %s: read %d bytes at %d: %w", img.path, n, off, err)
	}
	if n < uint64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// ReadV reads the virtual disk at off into bufs, one after the other, as
// ReadAt into their concatenation would, without gathering them: a run of
// allocated clusters goes straight into the buffers with one preadv. The
// whole range must lie inside the disk.
func (img *Image) ReadV(bufs [][]byte, off int64) error {
	var n uint64
	for _, b := range bufs {
		n += uint64(len(b))
	}
	if off < 0 || uint64(off) > img.size || n > img.size-uint64(off) {
		return fmt.Errorf("qcow2 %s: read of %d bytes at %d: %w (%d bytes)", img.path, n, off, ErrRange, img.size)
	}
	img.mu.RLock()
	err := img.readv(bufs, uint64(off), n)
	img.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("qcow2 %s: read %d bytes at %d: %w", img.path, n, off, err)
	}
	return nil
}

// read fills p from the virtual disk at off (inside the disk); mu held.
func (img *Image) read(p []byte, off uint64) error {
	return img.readv([][]byte{p}, off, uint64(len(p)))
}

// readv fills bufs (n bytes in all) from the virtual disk at off (inside
// the disk); mu held.
func (img *Image) readv(bufs [][]byte, off, n uint64) error {
	var cbuf []byte // one decompressed cluster
	cur := iovCursor{bufs: bufs}
	var dst [][]byte
	return img.segments(off, n, func(off, n, gc, count uint64) error {
		es, err := img.entries(gc, count)
		if err != nil {
			return err
		}
		for i := uint64(0); i < count; {
			k, host, err := img.classify(es[i])
			if err != nil {
				return err
			}
			// Merge following clusters that are read the same way.
			j := i + 1
			for ; j < count && k != kCompressed; j++ {
				k2, h2, err := img.classify(es[j])
				if err != nil {
					return err
				}
				if k2 != k || k == kNormal && h2 != host+(j-i)*img.cs {
					break
				}
			}
			start := max(off, (gc+i)<<img.bits)
			end := min(off+n, (gc+j)<<img.bits)
			dst = cur.take(dst[:0], end-start)
			inner := start & (img.cs - 1)
			switch k {
			case kUnalloc:
				pos := start
				for _, b := range dst {
					if err = img.readBacking(b, pos); err != nil {
						break
					}
					pos += uint64(len(b))
				}
			case kZero:
				for _, b := range dst {
					clear(b)
				}
			case kNormal:
				err = img.preadv(dst, host+inner)
			case kCompressed:
				if cbuf == nil {
					cbuf = make([]byte, img.cs)
				}
				if err = img.readCompressed(es[i], cbuf); err == nil {
					src := cbuf[inner:]
					for _, b := range dst {
						src = src[copy(b, src):]
					}
				}
			}
			if err != nil {
				return err
			}
			i = j
		}
		return nil
	})
}

// iovCursor hands out a request's buffers in consecutive pieces.
type iovCursor struct {
	bufs [][]byte
	i    int // current buffer
	skip int // bytes of it handed out
}

// take appends to dst the next n bytes of the buffers, as sub-slices.
func (c *iovCursor) take(dst [][]byte, n uint64) [][]byte {
	for n > 0 {
		b := c.bufs[c.i][c.skip:]
		if uint64(len(b)) > n {
			c.skip += int(n)
			return append(dst, b[:n])
		}
		if len(b) > 0 {
			dst = append(dst, b)
		}
		n -= uint64(len(b))
		c.i, c.skip = c.i+1, 0
	}
	return dst
}

// readBacking reads the backing file's bytes at off: zeros with no backing
// file or beyond its end.
func (img *Image) readBacking(p []byte, off uint64) error {
	if img.backing == nil {
		clear(p)
		return nil
	}
	bs := uint64(img.backing.Size())
	var n uint64
	if off < bs {
		n = min(uint64(len(p)), bs-off)
		got, err := img.backing.ReadAt(p[:n], int64(off))
		if err != nil && !(errors.Is(err, io.EOF) && uint64(got) == n) {
			if !errors.Is(err, io.EOF) {
				return fmt.Errorf("backing file: %w", err)
			}
			clear(p[got:n]) // a raw backing file that shrank
		}
	}
	clear(p[n:])
	return nil
}

// compressedExtent decodes a compressed cluster descriptor into the byte
// range of the file it occupies: from off to the end of its last sector.
func (img *Image) compressedExtent(e uint64) (off, length uint64) {
	x := 62 - (img.bits - 8)
	off = e & (1<<x - 1)
	sectors := (e>>x)&(1<<(img.bits-8)-1) + 1
	return off, sectors*512 - off%512
}

// readCompressed decompresses the cluster described by e into dst (one cluster).
func (img *Image) readCompressed(e uint64, dst []byte) error {
	off, n := img.compressedExtent(e)
	src := make([]byte, n)
	if err := img.pread(src, off); err != nil {
		return err
	}
	var err error
	if img.h.compression == compressionZstd {
		err = img.unzstd(src, dst)
	} else {
		err = img.inflate(src, dst)
	}
	if err != nil {
		return fmt.Errorf("%w: compressed cluster at %#x: %v", ErrCorrupt, off, err)
	}
	return nil
}

// inflate decompresses raw deflate data (as QEMU writes it, no zlib header)
// until dst is full; what follows in src is padding.
func (img *Image) inflate(src, dst []byte) error {
	r, _ := img.inflaters.Get().(io.ReadCloser)
	if r == nil {
		r = flate.NewReader(bytes.NewReader(src))
	} else if err := r.(flate.Resetter).Reset(bytes.NewReader(src), nil); err != nil {
		return err
	}
	defer img.inflaters.Put(r)
	_, err := io.ReadFull(r, dst)
	return err
}

// zstdMaxWindow bounds the memory a hostile frame can make the decoder take;
// QEMU's frames decode one cluster (at most 2 MiB).
const zstdMaxWindow = 8 << 20

func (img *Image) unzstd(src, dst []byte) error {
	d, _ := img.zstds.Get().(*zstd.Decoder)
	if d == nil {
		var err error
		d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderMaxMemory(zstdMaxWindow))
		if err != nil {
			return err
		}
	}
	if err := d.Reset(bytes.NewReader(src)); err != nil {
		return err
	}
	defer img.zstds.Put(d)
	_, err := io.ReadFull(d, dst)
	return err
}

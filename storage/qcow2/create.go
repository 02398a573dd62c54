package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// CreateOptions tune Create; the zero value gives what qemu-img gives.
type CreateOptions struct {
	// ClusterSize is a power of two from 512 bytes to 2 MiB (default 64 KiB).
	ClusterSize int
	// RefcountBits is 1, 2, 4, 8, 16, 32 or 64 (default 16).
	RefcountBits int
	// BackingFormat is "raw" or "qcow2"; empty: probed from the backing file.
	BackingFormat string
}

// Create makes a new, empty qcow2 v3 image of size bytes (a multiple of 512)
// at path, which must not exist yet. With a backing file, size 0 means the
// backing file's size; the backing name is stored as given (a relative name
// is relative to the directory of path) and must open.
func Create(path string, size int64, backing string, opts *CreateOptions) error {
	if err := create(path, size, backing, opts); err != nil {
		return fmt.Errorf("qcow2 create %s: %w", path, err)
	}
	return nil
}

func create(path string, size int64, backing string, opts *CreateOptions) error {
	n, err := build(path, size, backing, opts)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err = errors.Join(n.write(f), f.Close()); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// CreateOverlay makes a throw-away image in directory dir over the image
// backing (an absolute path; backingFormat "raw" or "qcow2", empty: probed)
// and opens it for writing. The file has no name from the start (O_TMPFILE,
// or removed at once where the filesystem lacks it), so nothing is left
// behind however the process ends, SIGKILL included. Its backing chain is
// opened read-only with shared locks, so many overlays share one base. As
// the overlay cannot outlive the process, it is never synced: a flush
// costs nothing.
func CreateOverlay(dir, backing, backingFormat string) (*Image, error) {
	img, err := createOverlay(dir, backing, backingFormat)
	if err != nil {
		return nil, fmt.Errorf("qcow2 overlay of %s: %w", backing, err)
	}
	return img, nil
}

func createOverlay(dir, backing, backingFormat string) (*Image, error) {
	if !filepath.IsAbs(backing) {
		return nil, fmt.Errorf("backing file name %q is not absolute", backing)
	}
	name := filepath.Join(dir, "vmm-overlay.qcow2") // only for messages and Create's checks
	n, err := build(name, 0, backing, &CreateOptions{BackingFormat: backingFormat})
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(dir, os.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		// Not every filesystem has O_TMPFILE: a named file, unlinked at once.
		f, err = os.CreateTemp(dir, "vmm-overlay-*.qcow2")
		if err != nil {
			return nil, fmt.Errorf("temporary file: %w", err)
		}
		if err := os.Remove(f.Name()); err != nil {
			f.Close()
			return nil, fmt.Errorf("unlink temporary file: %w", err)
		}
	}
	if err := n.write(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("write overlay: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("stat overlay: %w", err)
	}
	img, err := openOn(f, fileID{uint64(st.Dev), st.Ino}, st.Size, name, false, nil)
	if err != nil {
		return nil, err
	}
	img.ephemeral = true
	return img, nil
}

// build lays out a new image file at path.
func build(path string, size int64, backing string, opts *CreateOptions) (*newImage, error) {
	var o CreateOptions
	if opts != nil {
		o = *opts
	}
	if o.ClusterSize == 0 {
		o.ClusterSize = 64 << 10
	}
	if o.RefcountBits == 0 {
		o.RefcountBits = 16
	}
	cb := bits.TrailingZeros(uint(o.ClusterSize))
	if o.ClusterSize < 0 || o.ClusterSize&(o.ClusterSize-1) != 0 || cb < minClusterBits || cb > maxClusterBits {
		return nil, fmt.Errorf("cluster size %d is not a power of two from 512 to 2 MiB", o.ClusterSize)
	}
	order := bits.TrailingZeros(uint(o.RefcountBits))
	if o.RefcountBits < 0 || o.RefcountBits&(o.RefcountBits-1) != 0 || order > 6 {
		return nil, fmt.Errorf("refcount bits %d is not a power of two from 1 to 64", o.RefcountBits)
	}
	if size < 0 || size%512 != 0 || size > maxVirtualSize {
		return nil, fmt.Errorf("size %d is not a multiple of 512 from 0 to %d", size, uint64(maxVirtualSize))
	}
	if len(backing) > maxBackingName {
		return nil, fmt.Errorf("backing file name of %d bytes (at most %d)", len(backing), maxBackingName)
	}
	if backing != "" {
		bsize, format, err := probeBacking(path, backing, o.BackingFormat)
		if err != nil {
			return nil, err
		}
		o.BackingFormat = format
		if size == 0 {
			size = (bsize + 511) &^ 511
		}
	} else if o.BackingFormat != "" {
		return nil, errors.New("a backing format without a backing file")
	}

	cs := uint64(o.ClusterSize)
	l1Entries := divCeil(uint64(size), cs*(cs/8))
	if l1Entries*8 > maxL1Bytes {
		return nil, fmt.Errorf("size %d needs an L1 table beyond %d bytes; use bigger clusters", size, maxL1Bytes)
	}
	l1c := divCeil(l1Entries*8, cs)
	// Cluster 0 is the header, then the L1 table, the refcount table (t
	// clusters) and the refcount blocks (k) that count all of these.
	perBlock := cs * 8 / uint64(o.RefcountBits)
	k, t := uint64(1), uint64(1)
	for {
		total := 1 + l1c + t + k
		k2 := divCeil(total, perBlock)
		t2 := divCeil(k2*8, cs)
		if k2 <= k && t2 <= t {
			break
		}
		k, t = max(k, k2), max(t, t2)
	}
	total := 1 + l1c + t + k

	hdr := make([]byte, cs)
	be := binary.BigEndian
	be.PutUint32(hdr[0:], magic)
	be.PutUint32(hdr[4:], 3)
	be.PutUint32(hdr[20:], uint32(cb))
	be.PutUint64(hdr[24:], uint64(size))
	be.PutUint32(hdr[36:], uint32(l1Entries))
	be.PutUint64(hdr[40:], cs)
	be.PutUint64(hdr[48:], (1+l1c)*cs)
	be.PutUint32(hdr[56:], uint32(t))
	be.PutUint32(hdr[96:], uint32(order))
	const hdrLen = 112 // with compression_type (0: deflate) and padding
	be.PutUint32(hdr[100:], hdrLen)
	p := uint64(hdrLen)
	if backing != "" {
		ext := []byte(o.BackingFormat)
		if p+8+uint64(len(ext))+7+8 > cs {
			return nil, fmt.Errorf("header does not fit a cluster of %d bytes", cs)
		}
		be.PutUint32(hdr[p:], extBackingFormat)
		be.PutUint32(hdr[p+4:], uint32(len(ext)))
		copy(hdr[p+8:], ext)
		p += 8 + (uint64(len(ext))+7)&^7
	}
	p += 8 // end of extensions
	if backing != "" {
		if p+uint64(len(backing)) > cs {
			return nil, fmt.Errorf("backing file name does not fit a header cluster of %d bytes", cs)
		}
		be.PutUint64(hdr[8:], p)
		be.PutUint32(hdr[16:], uint32(len(backing)))
		copy(hdr[p:], backing)
	}

	rt := make([]byte, t*cs)
	blocks := make([]byte, k*cs)
	for i := range k {
		be.PutUint64(rt[i*8:], (1+l1c+t+i)*cs)
	}
	// Reuse the refcount accessors on a scratch image with the new geometry.
	scratch := &Image{h: &header{refcountOrder: uint32(order)}, bits: uint32(cb), cs: cs}
	for c := range total {
		b := blocks[c/perBlock*cs:]
		scratch.setRC(b, c%perBlock, 1)
	}

	return &newImage{parts: []part{{hdr, 0}, {rt, (1 + l1c) * cs}, {blocks, (1 + l1c + t) * cs}}, size: total * cs}, nil
}

// newImage is the content of a new image file: its non-zero parts and its length.
type newImage struct {
	parts []part
	size  uint64
}

type part struct {
	b   []byte
	off uint64
}

// write puts the image into the empty file f and makes it durable.
func (n *newImage) write(f *os.File) error {
	for _, w := range n.parts {
		if _, err := f.WriteAt(w.b, int64(w.off)); err != nil {
			return err
		}
	}
	if err := f.Truncate(int64(n.size)); err != nil {
		return err
	}
	return f.Sync()
}

// probeBacking opens the backing file of a new image the way Open will, and
// returns its size and format.
func probeBacking(path, backing, format string) (int64, string, error) {
	bpath := backing
	if !filepath.IsAbs(bpath) {
		bpath = filepath.Join(filepath.Dir(path), bpath)
	}
	switch format {
	case "", "raw", "qcow2":
	default:
		return 0, "", fmt.Errorf("%w: backing format %q (raw and qcow2 are supported)", ErrUnsupported, format)
	}
	f, _, size, err := openFile(bpath, true)
	if err != nil {
		return 0, "", fmt.Errorf("backing file: %w", err)
	}
	defer f.Close()
	isQcow2, err := Detect(f)
	if err != nil {
		return 0, "", fmt.Errorf("backing file %s: %w", bpath, err)
	}
	if format == "" {
		format = "raw"
		if isQcow2 {
			format = "qcow2"
		}
	}
	if format == "qcow2" {
		img, err := Open(bpath, true)
		if err != nil {
			return 0, "", fmt.Errorf("backing file: %w", err)
		}
		size = img.Size()
		img.Close()
	}
	return size, format, nil
}

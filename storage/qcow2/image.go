package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// maxChainDepth bounds a backing chain (the image itself not counted).
const maxChainDepth = 32

// L1/L2 entry bits.
const (
	flagCopied     = 1 << 63
	flagCompressed = 1 << 62
	flagZero       = 1 << 0
	offsetMask     = 0x00fffffffffffe00 // bits 9-55: host offset of a table or cluster
)

// ErrRange means a write or zeroing beyond the end of the virtual disk.
var ErrRange = errors.New("access beyond the end of the virtual disk")

// source is what a backing file is: a qcow2 image or a raw file.
type source interface {
	io.ReaderAt
	Size() int64
	Close() error
}

// Image is an open qcow2 image. See the package comment for its concurrency
// and crash-consistency guarantees.
type Image struct {
	path     string
	f        *os.File
	readOnly bool
	h        *header
	bits     uint32 // cluster_bits
	cs       uint64 // cluster size
	size     uint64 // virtual size

	backing source // nil: none
	chain   []BackingInfo

	// mu guards the mapping: readers of L1/L2/refcounts hold it shared,
	// whoever changes them holds it exclusively.
	mu sync.RWMutex
	l1 []uint64
	l2 *l2Cache

	// Written only with mu held exclusively (and only when writable).
	rt       []uint64          // refcount table
	rb       map[uint64][]byte // refcount blocks by host offset (written through)
	freeHint uint64            // no free cluster below this index

	fileEnd atomic.Uint64 // the file's size, as far as this process has written it

	inflaters sync.Pool // flate readers
	zstds     sync.Pool // zstd decoders

	// hook, when set (tests only), runs before every write and sync of the
	// image file: the crash test kills the process from it.
	hook func()

	// ephemeral images (CreateOverlay) have no name and die with the
	// process: there is nothing for a sync to protect, so none is made.
	ephemeral bool
}

// BackingInfo describes one backing file of a chain.
type BackingInfo struct {
	Name        string // as stored in the image that names it
	Path        string // resolved
	Format      string // "qcow2" or "raw"
	VirtualSize int64
}

// Open opens a qcow2 image and its backing chain (read-only). The file is
// locked with flock: shared when read-only, exclusive otherwise; backing
// files are locked shared. A file that is not qcow2 gives ErrNotQcow2.
func Open(path string, readOnly bool) (*Image, error) {
	img, err := open(path, readOnly, nil)
	if err != nil {
		return nil, fmt.Errorf("qcow2 %s: %w", path, err)
	}
	return img, nil
}

type fileID struct{ dev, ino uint64 }

// openFile opens a regular file without blocking on FIFOs or devices a
// hostile backing name might point at, and locks it.
func openFile(path string, readOnly bool) (*os.File, fileID, int64, error) {
	flags, lock := os.O_RDWR, unix.LOCK_EX
	if readOnly {
		flags, lock = os.O_RDONLY, unix.LOCK_SH
	}
	f, err := os.OpenFile(path, flags|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fileID{}, 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fileID{}, 0, fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, fileID{}, 0, fmt.Errorf("%s: not a regular file", path)
	}
	if err := unix.Flock(int(f.Fd()), lock|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fileID{}, 0, fmt.Errorf("%s: %w", path, ErrBusy)
		}
		return nil, fileID{}, 0, fmt.Errorf("%s: lock: %w", path, err)
	}
	return f, fileID{uint64(st.Dev), st.Ino}, st.Size, nil
}

// open opens one image of a chain; seen holds the files above it.
func open(path string, readOnly bool, seen []fileID) (*Image, error) {
	f, id, fileSize, err := openFile(path, readOnly)
	if err != nil {
		return nil, err
	}
	return openOn(f, id, fileSize, path, readOnly, seen)
}

// openOn reads the image in f (already opened and locked), taking f over:
// it is closed on error.
func openOn(f *os.File, id fileID, fileSize int64, path string, readOnly bool, seen []fileID) (img *Image, err error) {
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	for _, s := range seen {
		if s == id {
			return nil, fmt.Errorf("%w: %s is its own backing file (a loop)", ErrBackingChain, path)
		}
	}
	h, err := readHeader(f, fileSize)
	if err != nil {
		return nil, err
	}
	img = &Image{path: path, f: f, readOnly: readOnly, h: h, bits: h.clusterBits, cs: h.clusterSize(), size: h.size,
		l2: newL2Cache(h.clusterSize(), h.l1Size)}
	img.fileEnd.Store(uint64(fileSize))

	raw := make([]byte, uint64(h.l1Size)*8)
	if _, err := f.ReadAt(raw, int64(h.l1Offset)); err != nil {
		return nil, fmt.Errorf("read L1 table: %w", err)
	}
	img.l1 = make([]uint64, h.l1Size)
	for i := range img.l1 {
		img.l1[i] = binary.BigEndian.Uint64(raw[i*8:])
	}

	if !readOnly {
		if err := img.openWritable(); err != nil {
			return nil, err
		}
	}
	if h.backingName != "" {
		if err := img.openBacking(append(seen, id)); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// openWritable refuses what cannot be written safely and loads the refcount
// table.
func (img *Image) openWritable() error {
	h := img.h
	if h.incompatible&incCorrupt != 0 {
		return fmt.Errorf("%w: image is marked corrupt (repair it with qemu-img check -r all, or open it read-only)", ErrCorrupt)
	}
	if h.incompatible&incDirty != 0 {
		return fmt.Errorf("%w: image is dirty (lazy refcounts); repair it with qemu-img check -r all, or open it read-only", ErrUnsupported)
	}
	raw := make([]byte, uint64(h.refTableCluster)*img.cs)
	if _, err := img.f.ReadAt(raw, int64(h.refTableOffset)); err != nil {
		return fmt.Errorf("read refcount table: %w", err)
	}
	img.rt = make([]uint64, len(raw)/8)
	for i := range img.rt {
		img.rt[i] = binary.BigEndian.Uint64(raw[i*8:])
	}
	img.rb = make(map[uint64][]byte)
	// Autoclear bits name extensions (bitmaps, ...) that this writer does
	// not keep up to date: the spec says to clear the ones it does not know.
	if h.version == 3 && h.autoclear != 0 {
		if err := img.pwrite(make([]byte, 8), offAutoclear); err != nil {
			return fmt.Errorf("clear autoclear features: %w", err)
		}
		if err := img.sync(); err != nil {
			return err
		}
		h.autoclear = 0
	}
	return nil
}

// openBacking opens the backing file named by the header, read-only.
func (img *Image) openBacking(seen []fileID) error {
	h := img.h
	if len(seen) > maxChainDepth {
		return fmt.Errorf("%w: more than %d backing files", ErrBackingChain, maxChainDepth)
	}
	name := h.backingName
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(img.path), path)
	}
	format := h.backingFormat
	switch format {
	case "", "qcow2", "raw":
	default:
		return fmt.Errorf("%w: backing file %s has format %q (raw and qcow2 are supported)", ErrUnsupported, name, format)
	}
	if format == "" {
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return &chainError{fmt.Errorf("backing file: %w", err)}
		}
		ok, err := Detect(f)
		f.Close()
		if err != nil {
			return &chainError{fmt.Errorf("backing file %s: %w", path, err)}
		}
		format = "raw"
		if ok {
			format = "qcow2"
		}
	}
	var b source
	var sub []BackingInfo
	if format == "qcow2" {
		bi, err := open(path, true, seen)
		if ce := (*chainError)(nil); errors.As(err, &ce) {
			return err // already names the backing file it is about
		}
		if err != nil {
			return &chainError{fmt.Errorf("backing file %s: %w", path, err)}
		}
		b, sub = bi, bi.chain
	} else {
		f, _, size, err := openFile(path, true)
		if err != nil {
			return &chainError{fmt.Errorf("backing file: %w", err)}
		}
		b = &rawFile{f: f, size: size}
	}
	img.backing = b
	img.chain = append([]BackingInfo{{Name: name, Path: path, Format: format, VirtualSize: b.Size()}}, sub...)
	return nil
}

// chainError is an error about a file deep in a backing chain: it names
// that file, and the images above it pass it on unwrapped, so a long chain
// gives one line, not one per level.
type chainError struct{ err error }

func (e *chainError) Error() string { return e.err.Error() }
func (e *chainError) Unwrap() error { return e.err }

// rawFile is a raw backing file.
type rawFile struct {
	f    *os.File
	size int64
}

func (r *rawFile) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }
func (r *rawFile) Size() int64                             { return r.size }
func (r *rawFile) Close() error                            { return r.f.Close() }

// Size is the virtual disk size in bytes.
func (img *Image) Size() int64 { return int64(img.size) }

// ReadOnly reports whether the image was opened read-only.
func (img *Image) ReadOnly() bool { return img.readOnly }

// Close flushes a writable image and closes it and its backing chain.
func (img *Image) Close() error {
	var err error
	if !img.readOnly {
		err = img.Flush()
	}
	err = errors.Join(err, img.f.Close())
	if img.backing != nil {
		err = errors.Join(err, img.backing.Close())
	}
	return err
}

// Flush makes every write that completed before it durable.
func (img *Image) Flush() error {
	if img.readOnly {
		return nil
	}
	if err := img.sync(); err != nil {
		return fmt.Errorf("qcow2 %s: %w", img.path, err)
	}
	return nil
}

// Info describes an open image.
type Info struct {
	Format      string // "qcow2"
	Version     int
	VirtualSize int64
	ClusterSize int
	// FileSize is the image file's length; AllocatedSize the bytes the file
	// occupies on disk (qemu-img info's "disk size").
	FileSize, AllocatedSize int64
	Compression             string // "zlib" or "zstd"
	Snapshots               int    // internal snapshots (ignored by this package)
	Backing                 []BackingInfo
}

// Info describes the image and its backing chain (nearest backing file first).
func (img *Image) Info() (Info, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(img.f.Fd()), &st); err != nil {
		return Info{}, fmt.Errorf("qcow2 %s: stat: %w", img.path, err)
	}
	comp := "zlib"
	if img.h.compression == compressionZstd {
		comp = "zstd"
	}
	return Info{
		Format: "qcow2", Version: int(img.h.version), VirtualSize: int64(img.size), ClusterSize: int(img.cs),
		FileSize: st.Size, AllocatedSize: st.Blocks * 512, Compression: comp, Snapshots: int(img.h.nbSnapshots),
		Backing: append([]BackingInfo(nil), img.chain...),
	}, nil
}

// pwrite writes p at off in the image file.
func (img *Image) pwrite(p []byte, off uint64) error {
	if img.hook != nil {
		img.hook()
	}
	if _, err := img.f.WriteAt(p, int64(off)); err != nil {
		return err
	}
	for end := off + uint64(len(p)); ; {
		cur := img.fileEnd.Load()
		if cur >= end || img.fileEnd.CompareAndSwap(cur, end) {
			return nil
		}
	}
}

// pwritev writes bufs at off in the image file, as pwrite would their
// concatenation.
func (img *Image) pwritev(bufs [][]byte, off uint64) error {
	if len(bufs) == 1 {
		return img.pwrite(bufs[0], off)
	}
	if img.hook != nil {
		img.hook()
	}
	end := off
	for _, b := range bufs {
		end += uint64(len(b))
	}
	for pos := off; len(bufs) > 0; {
		batch := bufs[:min(len(bufs), iovMax)]
		n, err := unix.Pwritev(int(img.f.Fd()), batch, int64(pos))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return err
		case n == 0:
			return io.ErrShortWrite
		}
		pos += uint64(n)
		for len(bufs) > 0 && n >= len(bufs[0]) {
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
		if n > 0 {
			// A short write inside a buffer: the rest of it next.
			bufs = append([][]byte{bufs[0][n:]}, bufs[1:]...)
		}
	}
	for {
		cur := img.fileEnd.Load()
		if cur >= end || img.fileEnd.CompareAndSwap(cur, end) {
			return nil
		}
	}
}

// sync is the barrier between a write and the one that depends on it.
func (img *Image) sync() error {
	if img.hook != nil {
		img.hook()
	}
	if img.ephemeral {
		return nil
	}
	for {
		err := unix.Fdatasync(int(img.f.Fd()))
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				return fmt.Errorf("fdatasync: %w", err)
			}
			return nil
		}
	}
}

// pread fills p from off; bytes beyond the end of the file read as zeros
// (as QEMU's file driver does for data clusters).
func (img *Image) pread(p []byte, off uint64) error {
	n, err := img.f.ReadAt(p, int64(off))
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	clear(p[n:])
	return nil
}

// iovMax is Linux's limit on the buffers of one preadv (UIO_MAXIOV).
const iovMax = 1024

// preadv fills bufs from off, as pread would their concatenation: bytes
// beyond the end of the file read as zeros.
func (img *Image) preadv(bufs [][]byte, off uint64) error {
	if len(bufs) == 1 {
		return img.pread(bufs[0], off)
	}
	for len(bufs) > 0 {
		batch := bufs[:min(len(bufs), iovMax)]
		n, err := unix.Preadv(int(img.f.Fd()), batch, int64(off))
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return err
		case n == 0:
			for _, b := range bufs {
				clear(b)
			}
			return nil
		}
		off += uint64(n)
		for len(bufs) > 0 && n >= len(bufs[0]) {
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
		if n > 0 {
			// A short read inside a buffer: the rest of it next.
			rest := append([][]byte{bufs[0][n:]}, bufs[1:]...)
			bufs = rest
		}
	}
	return nil
}

// preadMeta reads metadata that must lie wholly inside the file.
func (img *Image) preadMeta(what string, p []byte, off uint64) error {
	n, err := img.f.ReadAt(p, int64(off))
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s at %#x beyond the end of the file", ErrCorrupt, what, off)
	}
	return fmt.Errorf("read %s: %w", what, err)
}

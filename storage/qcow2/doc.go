// Package qcow2 reads and writes QEMU copy-on-write disk images (qcow2,
// versions 2 and 3), so a block device back-end can serve them as it serves
// raw files.
//
//	ok, err := qcow2.Detect(f)               // is f a qcow2 image? (raw is the caller's business)
//	err = qcow2.Create(path, size, backing, nil) // a new v3 image, 64 KiB clusters
//	img, err := qcow2.Open(path, readOnly)   // the image and its backing chain
//	img.ReadAt(p, off); img.WriteAt(p, off)  // byte offsets in the virtual disk
//	img.WriteZeroes(off, n); img.Discard(off, n)
//	img.Flush()                              // completed writes become durable
//	img.Info()                               // format, sizes, backing chain
//	img.Close()
//
// Backing files are opened read-only; a relative backing name is resolved
// against the directory of the image that names it, as QEMU does. Reads of
// clusters the image does not hold fall through to the backing file (zeros
// beyond its end, or with no backing file). Compressed clusters (deflate, and
// zstd for v3 images with compression_type 1) are read, and rewritten
// uncompressed when written to.
//
// Crash consistency: the image's metadata is written through (there is no
// metadata cache to lose) in the order QEMU uses: a cluster's data and its
// refcount are made durable before the L2 entry that points at it is written,
// and a new L2 table (or refcount block, or refcount table) is durable before
// the L1 entry (or table entry, or header) that points at it. A process killed
// or a machine that loses power at any point leaves an image that `qemu-img
// check` may find leaked clusters in, never a corrupt one. Refcounts are always
// kept exact, so the dirty bit and lazy refcounts are never used.
//
// Concurrency: an *Image is safe for use by several goroutines. Reads, and
// writes that land in clusters already allocated to the image, run in
// parallel under a shared lock; anything that changes metadata (allocation,
// zeroing) holds the lock exclusively.
//
// An image is untrusted input: every header field, table offset and entry is
// checked before use, a bad one gives an error wrapping ErrCorrupt or
// ErrUnsupported, and no allocation is ever sized by a field of the file
// without a bound.
package qcow2

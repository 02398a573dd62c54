package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Sentinel errors; every error of the package that is about the image wraps
// one of them, or an *os.PathError / fs.ErrNotExist for files that cannot be
// opened.
var (
	// ErrNotQcow2 means the file does not start with the qcow2 magic.
	ErrNotQcow2 = errors.New("not a qcow2 image")
	// ErrCorrupt means a header field, table or entry is inconsistent.
	ErrCorrupt = errors.New("corrupt qcow2 image")
	// ErrUnsupported means a valid image uses a feature this package lacks
	// (encryption, external data files, extended L2 entries, ...).
	ErrUnsupported = errors.New("unsupported qcow2 feature")
	// ErrReadOnly means a write to an image opened read-only.
	ErrReadOnly = errors.New("qcow2 image is read-only")
	// ErrBackingChain means a backing chain that loops or is too deep.
	ErrBackingChain = errors.New("bad backing chain")
	// ErrBusy means another process holds the image (or holds it for writing).
	ErrBusy = errors.New("image is in use by another process")
)

const (
	magic = 0x514649fb // "QFI\xfb"

	v2HeaderLen = 72
	v3HeaderLen = 104

	minClusterBits = 9
	maxClusterBits = 21

	// QEMU's own limits on the tables it loads whole (QCOW_MAX_L1_SIZE,
	// QCOW_MAX_REFTABLE_SIZE); an image beyond them is refused by QEMU too.
	maxL1Bytes       = 32 << 20
	maxRefTableBytes = 8 << 20

	maxBackingName = 1023
	// maxVirtualSize keeps every byte offset of the disk an int64 with room
	// to spare (QEMU's limit is of the same order).
	maxVirtualSize = 1 << 61

	// Header extension types.
	extEnd           = 0
	extBackingFormat = 0xe2792aca
	extFeatureTable  = 0x6803f857

	// Incompatible feature bits.
	incDirty        = 1 << 0
	incCorrupt      = 1 << 1
	incExternalData = 1 << 2
	incCompression  = 1 << 3
	incExtendedL2   = 1 << 4
	incKnown        = incDirty | incCorrupt | incExternalData | incCompression | incExtendedL2

	compressionDeflate = 0
	compressionZstd    = 1

	// Header field offsets that are rewritten in place.
	offRefTable  = 48 // refcount_table_offset (8) and refcount_table_clusters (4)
	offAutoclear = 88
)

// header is a parsed, validated qcow2 header.
type header struct {
	version         uint32
	backingOffset   uint64
	backingSize     uint32
	clusterBits     uint32
	size            uint64
	cryptMethod     uint32
	l1Size          uint32
	l1Offset        uint64
	refTableOffset  uint64
	refTableCluster uint32
	nbSnapshots     uint32
	snapshotsOffset uint64
	incompatible    uint64
	compatible      uint64
	autoclear       uint64
	refcountOrder   uint32
	headerLen       uint32
	compression     uint8

	backingName   string
	backingFormat string // from the extension; "" when absent
	features      map[[2]uint8]string
}

func (h *header) clusterSize() uint64 { return 1 << h.clusterBits }

// l2Entries is how many 8-byte entries one L2 table (one cluster) holds.
func (h *header) l2Entries() uint64 { return h.clusterSize() / 8 }

// Detect reports whether r starts with the qcow2 magic. A source too short to
// hold a header is not qcow2; any other read error is returned.
func Detect(r io.ReaderAt) (bool, error) {
	var b [4]byte
	n, err := r.ReadAt(b[:], 0)
	if n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, fmt.Errorf("qcow2 detect: %w", err)
	}
	return binary.BigEndian.Uint32(b[:]) == magic, nil
}

// readHeader reads and validates the header of an image whose file is
// fileSize bytes long. Everything that would make a later access go wrong is
// refused here with one error.
func readHeader(r io.ReaderAt, fileSize int64) (*header, error) {
	be := binary.BigEndian
	var b [v3HeaderLen + 8]byte
	n, err := r.ReadAt(b[:], 0)
	if n < v2HeaderLen {
		if n >= 4 && be.Uint32(b[:]) != magic {
			return nil, ErrNotQcow2
		}
		if n < 4 || err == nil || errors.Is(err, io.EOF) {
			if n >= 4 {
				return nil, fmt.Errorf("%w: file of %d bytes is shorter than a header", ErrCorrupt, fileSize)
			}
			return nil, ErrNotQcow2
		}
		return nil, fmt.Errorf("read header: %w", err)
	}
	if be.Uint32(b[0:]) != magic {
		return nil, ErrNotQcow2
	}
	h := &header{
		version:         be.Uint32(b[4:]),
		backingOffset:   be.Uint64(b[8:]),
		backingSize:     be.Uint32(b[16:]),
		clusterBits:     be.Uint32(b[20:]),
		size:            be.Uint64(b[24:]),
		cryptMethod:     be.Uint32(b[32:]),
		l1Size:          be.Uint32(b[36:]),
		l1Offset:        be.Uint64(b[40:]),
		refTableOffset:  be.Uint64(b[48:]),
		refTableCluster: be.Uint32(b[56:]),
		nbSnapshots:     be.Uint32(b[60:]),
		snapshotsOffset: be.Uint64(b[64:]),
		refcountOrder:   4,
		headerLen:       v2HeaderLen,
	}
	switch h.version {
	case 2:
	case 3:
		if n < v3HeaderLen {
			return nil, fmt.Errorf("%w: file of %d bytes is shorter than a v3 header", ErrCorrupt, fileSize)
		}
		h.incompatible = be.Uint64(b[72:])
		h.compatible = be.Uint64(b[80:])
		h.autoclear = be.Uint64(b[88:])
		h.refcountOrder = be.Uint32(b[96:])
		h.headerLen = be.Uint32(b[100:])
		if h.headerLen > v3HeaderLen {
			if n < v3HeaderLen+1 {
				return nil, fmt.Errorf("%w: header_length %d beyond the end of the file", ErrCorrupt, h.headerLen)
			}
			h.compression = b[104]
		}
	default:
		return nil, fmt.Errorf("%w: version %d", ErrUnsupported, h.version)
	}

	if h.clusterBits < minClusterBits || h.clusterBits > maxClusterBits {
		return nil, fmt.Errorf("%w: cluster_bits %d outside %d..%d", ErrCorrupt, h.clusterBits, minClusterBits, maxClusterBits)
	}
	cs := h.clusterSize()
	if h.version == 3 && (h.headerLen < v3HeaderLen || uint64(h.headerLen) > cs) {
		return nil, fmt.Errorf("%w: header_length %d", ErrCorrupt, h.headerLen)
	}
	if h.refcountOrder > 6 {
		return nil, fmt.Errorf("%w: refcount_order %d outside 0..6", ErrCorrupt, h.refcountOrder)
	}
	if h.cryptMethod != 0 {
		return nil, fmt.Errorf("%w: encrypted image (crypt_method %d)", ErrUnsupported, h.cryptMethod)
	}
	if h.size > maxVirtualSize {
		return nil, fmt.Errorf("%w: virtual size %d", ErrCorrupt, h.size)
	}
	if h.incompatible&incCompression != 0 != (h.compression != compressionDeflate) {
		return nil, fmt.Errorf("%w: compression_type %d disagrees with the compression feature bit", ErrCorrupt, h.compression)
	}
	if h.compression > compressionZstd {
		return nil, fmt.Errorf("%w: compression_type %d", ErrUnsupported, h.compression)
	}

	if err := h.readExtensions(r, fileSize); err != nil {
		return nil, err
	}
	if unknown := h.incompatible &^ incKnown; unknown != 0 {
		return nil, fmt.Errorf("%w: incompatible features %s", ErrUnsupported, h.featureNames(0, unknown))
	}
	if h.incompatible&incExternalData != 0 {
		return nil, fmt.Errorf("%w: external data file", ErrUnsupported)
	}
	if h.incompatible&incExtendedL2 != 0 {
		return nil, fmt.Errorf("%w: extended L2 entries (subclusters)", ErrUnsupported)
	}

	// L1: aligned, inside the file, big enough for the virtual size, and
	// no bigger than QEMU would load.
	need := divCeil(h.size, cs*h.l2Entries())
	if uint64(h.l1Size) < need {
		return nil, fmt.Errorf("%w: L1 table of %d entries too small for %d bytes", ErrCorrupt, h.l1Size, h.size)
	}
	if uint64(h.l1Size)*8 > maxL1Bytes {
		return nil, fmt.Errorf("%w: L1 table of %d entries", ErrUnsupported, h.l1Size)
	}
	if err := checkTable("L1 table", h.l1Offset, uint64(h.l1Size)*8, cs, fileSize); err != nil {
		return nil, err
	}
	rtBytes := uint64(h.refTableCluster) * cs
	if rtBytes == 0 {
		return nil, fmt.Errorf("%w: empty refcount table", ErrCorrupt)
	}
	if rtBytes > maxRefTableBytes {
		return nil, fmt.Errorf("%w: refcount table of %d clusters", ErrUnsupported, h.refTableCluster)
	}
	if err := checkTable("refcount table", h.refTableOffset, rtBytes, cs, fileSize); err != nil {
		return nil, err
	}
	return h, nil
}

// checkTable checks that a table of n bytes at off is cluster aligned and
// lies inside the file.
func checkTable(what string, off, n, clusterSize uint64, fileSize int64) error {
	if off == 0 || off%clusterSize != 0 {
		return fmt.Errorf("%w: %s offset %#x is not cluster aligned", ErrCorrupt, what, off)
	}
	if off > uint64(fileSize) || n > uint64(fileSize)-off {
		return fmt.Errorf("%w: %s at %#x (%d bytes) beyond the end of the file (%d bytes)", ErrCorrupt, what, off, n, fileSize)
	}
	return nil
}

// readExtensions reads the header extensions and the backing file name,
// all of which live in the first cluster.
func (h *header) readExtensions(r io.ReaderAt, fileSize int64) error {
	be := binary.BigEndian
	cs := h.clusterSize()
	end := min(cs, uint64(fileSize))
	if h.backingOffset != 0 {
		if h.backingSize == 0 || h.backingSize > maxBackingName {
			return fmt.Errorf("%w: backing file name of %d bytes", ErrCorrupt, h.backingSize)
		}
		if h.backingOffset < uint64(h.headerLen) || h.backingOffset > end || uint64(h.backingSize) > end-h.backingOffset {
			return fmt.Errorf("%w: backing file name at %#x (%d bytes) outside the first cluster", ErrCorrupt, h.backingOffset, h.backingSize)
		}
		name := make([]byte, h.backingSize)
		if _, err := r.ReadAt(name, int64(h.backingOffset)); err != nil {
			return fmt.Errorf("read backing file name: %w", err)
		}
		h.backingName = string(name)
		end = h.backingOffset
	}
	if uint64(h.headerLen) >= end {
		return nil
	}
	buf := make([]byte, end-uint64(h.headerLen))
	if _, err := r.ReadAt(buf, int64(h.headerLen)); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read header extensions: %w", err)
	}
	for off := uint64(0); off+8 <= uint64(len(buf)); {
		typ, n := be.Uint32(buf[off:]), uint64(be.Uint32(buf[off+4:]))
		if typ == extEnd {
			return nil
		}
		off += 8
		if n > uint64(len(buf))-off {
			return fmt.Errorf("%w: header extension %#x of %d bytes overruns the header cluster", ErrCorrupt, typ, n)
		}
		data := buf[off : off+n]
		switch typ {
		case extBackingFormat:
			h.backingFormat = string(data)
		case extFeatureTable:
			h.features = make(map[[2]uint8]string)
			for e := data; len(e) >= 48; e = e[48:] {
				h.features[[2]uint8{e[0], e[1]}] = string(trimNUL(e[2:48]))
			}
		}
		off += (n + 7) &^ 7
	}
	// Running out of room without an end marker is tolerated, as QEMU does
	// for images whose backing name follows the extensions directly.
	return nil
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// featureNames names the set bits of a feature field (kind 0: incompatible),
// using the image's feature name table where it has one.
func (h *header) featureNames(kind uint8, bits uint64) string {
	s := ""
	for i := range 64 {
		if bits&(1<<i) == 0 {
			continue
		}
		if s != "" {
			s += ", "
		}
		if name, ok := h.features[[2]uint8{kind, uint8(i)}]; ok && name != "" {
			s += fmt.Sprintf("%q (bit %d)", name, i)
		} else {
			s += fmt.Sprintf("bit %d", i)
		}
	}
	return s
}

func divCeil(a, b uint64) uint64 { return (a + b - 1) / b }

package blk

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Segment is one descriptor of a chain, already resolved into host memory by
// the virtqueue walker. Writable is the descriptor's VIRTQ_DESC_F_WRITE flag:
// the device may write Buf and must not trust what it holds.
type Segment struct {
	Buf      []byte
	Writable bool
}

// Request types (virtio 1.2, 5.2.6).
const (
	TypeIn          = 0
	TypeOut         = 1
	TypeFlush       = 4
	TypeGetID       = 8
	TypeDiscard     = 11
	TypeWriteZeroes = 13
)

// Status values written to the request's last byte.
const (
	StatusOK     = 0
	StatusIOErr  = 1
	StatusUnsupp = 2
)

const (
	headerSize = 16
	// SectorSize is the unit of virtio-blk addresses, whatever the image's block size.
	SectorSize = 512
	// rangeSize is one discard / write-zeroes segment: sector, num_sectors, flags.
	rangeSize = 16
	// IDSize is the length of the GET_ID answer (the serial, NUL padded).
	IDSize = 20
	// flagUnmap in a write-zeroes range allows the device to deallocate.
	flagUnmap = 1
)

// Parse errors; all of them end the request with an error status.
var (
	ErrNoStatus   = errors.New("no device-writable status byte at the end of the chain")
	ErrShortHdr   = errors.New("request header shorter than 16 bytes")
	ErrDirection  = errors.New("descriptor with the wrong direction for this request")
	ErrAlignment  = errors.New("data length not a multiple of 512")
	ErrOutOfRange = errors.New("sectors beyond the end of the disk")
	ErrRanges     = errors.New("malformed discard/write-zeroes ranges")
)

// request is a parsed chain: the header fields, the data segments in order
// and the status byte. Data segments alias guest memory.
type request struct {
	typ    uint32
	sector uint64
	// data holds the device-readable bytes after the header (OUT, DISCARD,
	// WRITE_ZEROES) or the device-writable bytes before the status (IN, GET_ID).
	data   [][]byte
	length uint64 // total bytes in data
	status *byte  // nil only when the chain has no writable byte at all
}

// parse splits a descriptor chain into a request. The layout the spec
// requires is: device-readable header and data, then device-writable data and
// the status byte; the framing across descriptors is free. Every violation is
// an error; req.status is set whenever the chain has a writable last byte, so
// the caller can still answer.
func parse(chain []Segment) (request, error) {
	var req request
	// The status byte is the last byte of the last descriptor, which must be writable.
	last := len(chain) - 1
	for last >= 0 && len(chain[last].Buf) == 0 {
		last--
	}
	if last < 0 || !chain[last].Writable {
		return req, ErrNoStatus
	}
	sb := chain[last].Buf
	req.status = &sb[len(sb)-1]

	// Readable part: header then data; writable part after it, status excluded.
	var hdr [headerSize]byte
	got := 0
	var readable, writable [][]byte
	seenWritable := false
	for i := 0; i <= last; i++ {
		s := chain[i]
		buf := s.Buf
		if i == last {
			buf = buf[:len(buf)-1]
		}
		if s.Writable {
			seenWritable = true
			if len(buf) > 0 {
				writable = append(writable, buf)
			}
			continue
		}
		if seenWritable {
			return req, fmt.Errorf("%w: readable descriptor %d after a writable one", ErrDirection, i)
		}
		if got < headerSize {
			n := copy(hdr[got:], buf)
			got += n
			buf = buf[n:]
		}
		if len(buf) > 0 {
			readable = append(readable, buf)
		}
	}
	if got < headerSize {
		return req, ErrShortHdr
	}
	req.typ = binary.LittleEndian.Uint32(hdr[0:])
	req.sector = binary.LittleEndian.Uint64(hdr[8:])

	switch req.typ {
	case TypeIn, TypeGetID:
		if len(readable) > 0 {
			return req, fmt.Errorf("%w: device-readable data in a read request", ErrDirection)
		}
		req.data = writable
	case TypeOut, TypeDiscard, TypeWriteZeroes:
		if len(writable) > 0 {
			return req, fmt.Errorf("%w: device-writable data in a write request", ErrDirection)
		}
		req.data = readable
	default:
		// FLUSH and unknown types carry no data; unknown ones are answered UNSUPP.
		req.data = append(readable, writable...)
	}
	for _, b := range req.data {
		req.length += uint64(len(b))
	}
	return req, nil
}

// checkRange validates [sector, sector+bytes/512) against a disk of capacity sectors.
func checkRange(sector, bytes, capacity uint64) error {
	if bytes%SectorSize != 0 {
		return ErrAlignment
	}
	n := bytes / SectorSize
	if sector > capacity || n > capacity-sector {
		return fmt.Errorf("%w: sector %d + %d > capacity %d", ErrOutOfRange, sector, n, capacity)
	}
	return nil
}

// span is one discard or write-zeroes range.
type span struct {
	sector  uint64
	sectors uint32
	flags   uint32
}

// parseSpans decodes the ranges of a discard / write-zeroes request, at most
// maxSpans of them, each within capacity.
func parseSpans(data [][]byte, length uint64, maxSpans int, capacity uint64) ([]span, error) {
	if length == 0 || length%rangeSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes", ErrRanges, length)
	}
	if length/rangeSize > uint64(maxSpans) {
		return nil, fmt.Errorf("%w: %d ranges, at most %d", ErrRanges, length/rangeSize, maxSpans)
	}
	flat := make([]byte, 0, length)
	for _, b := range data {
		flat = append(flat, b...)
	}
	out := make([]span, 0, len(flat)/rangeSize)
	for off := 0; off+rangeSize <= len(flat); off += rangeSize {
		s := span{
			sector:  binary.LittleEndian.Uint64(flat[off:]),
			sectors: binary.LittleEndian.Uint32(flat[off+8:]),
			flags:   binary.LittleEndian.Uint32(flat[off+12:]),
		}
		if err := checkRange(s.sector, uint64(s.sectors)*SectorSize, capacity); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

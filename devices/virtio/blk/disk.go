// Package blk is the virtio-blk device back-end: it serves the requests of
// one virtqueue (read, write, flush, get-id, discard, write-zeroes) from a raw
// image file. The PCI transport and the virtqueue walker hand it descriptor
// chains already resolved into host memory; it never sees guest addresses.
//
// Every field of a request is hostile: lengths, sectors and descriptor
// directions are checked, and a bad request is answered with an error status,
// never with a panic or an access outside the image.
package blk

import (
	"encoding/binary"
	"fmt"
	"log/slog"

	"github.com/vmmdev/vmm/storage/block"
)

// DeviceID is the virtio device ID of a block device.
const DeviceID = 2

// Feature bits the device offers (virtio 1.2, 5.2.3).
const (
	FeatureSegMax      = 1 << 2
	FeatureRO          = 1 << 5
	FeatureBlkSize     = 1 << 6
	FeatureFlush       = 1 << 9
	FeatureDiscard     = 1 << 13
	FeatureWriteZeroes = 1 << 14
)

// Limits advertised in the configuration space.
const (
	// SegMax bounds data descriptors per request; the queue size bounds it anyway.
	SegMax = 254
	// MaxSpans is how many ranges one discard / write-zeroes request may carry.
	MaxSpans = 32
	// maxSpanSectors bounds one range (the config fields are 32-bit).
	maxSpanSectors = 1<<32 - 1
)

// ErrBusy means another process holds the image (a second VM on the same disk).
var ErrBusy = block.ErrBusy

// Options describe one --disk.
type Options struct {
	Path     string
	ReadOnly bool
	// Format is block.FormatRaw or block.FormatQcow2; empty: probed.
	Format string
	// Snapshot sends writes to a throw-away overlay (block.Options.Snapshot).
	Snapshot bool
	// Serial is returned by GET_ID (at most 20 bytes); Linux shows it in
	// /sys/block/vdX/serial and udev builds /dev/disk/by-id/virtio-SERIAL from it.
	Serial string
}

// Disk is one open image with its virtio-blk identity. Its methods are safe
// for concurrent use: the image serves requests at their own offsets.
type Disk struct {
	img      block.Device
	capacity uint64 // in 512-byte sectors; bytes past the last whole sector are never touched
	readOnly bool
	id       [IDSize]byte
	log      *slog.Logger
}

// Open opens and locks the image (storage/block).
func Open(o Options, log *slog.Logger) (*Disk, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(o.Serial) > IDSize {
		return nil, fmt.Errorf("disk %s: serial %q is longer than %d bytes", o.Path, o.Serial, IDSize)
	}
	img, err := block.Open(block.Options{Path: o.Path, ReadOnly: o.ReadOnly, Format: o.Format, Snapshot: o.Snapshot}, log)
	if err != nil {
		return nil, err
	}
	d := &Disk{img: img, capacity: img.Sectors(), readOnly: img.ReadOnly(), log: log}
	copy(d.id[:], o.Serial)
	return d, nil
}

// Close flushes and releases the image and its lock.
func (d *Disk) Close() error { return d.img.Close() }

// Capacity is the disk size in 512-byte sectors.
func (d *Disk) Capacity() uint64 { return d.capacity }

// ReadOnly reports whether the disk refuses writes.
func (d *Disk) ReadOnly() bool { return d.readOnly }

// Features are the device feature bits (VIRTIO_F_VERSION_1 and the
// transport's bits are the transport's business).
func (d *Disk) Features() uint64 {
	f := uint64(FeatureSegMax | FeatureBlkSize | FeatureFlush)
	if d.readOnly {
		return f | FeatureRO
	}
	return f | FeatureDiscard | FeatureWriteZeroes
}

// ConfigSize is the length of struct virtio_blk_config up to the write-zeroes fields.
const ConfigSize = 60

// Config returns the device configuration space (struct virtio_blk_config).
func (d *Disk) Config() []byte {
	c := make([]byte, ConfigSize)
	le := binary.LittleEndian
	le.PutUint64(c[0:], d.capacity)
	le.PutUint32(c[12:], SegMax)
	le.PutUint32(c[20:], SectorSize) // blk_size
	if !d.readOnly {
		le.PutUint32(c[36:], maxSpanSectors) // max_discard_sectors
		le.PutUint32(c[40:], MaxSpans)       // max_discard_seg
		le.PutUint32(c[44:], 1)              // discard_sector_alignment
		le.PutUint32(c[48:], maxSpanSectors) // max_write_zeroes_sectors
		le.PutUint32(c[52:], MaxSpans)       // max_write_zeroes_seg
		c[56] = 1                            // write_zeroes_may_unmap
	}
	return c
}

// ReadConfig reads the configuration space at off; bytes past its end read as zero.
func (d *Disk) ReadConfig(off uint64, data []byte) {
	clear(data)
	c := d.Config()
	if off < uint64(len(c)) {
		copy(data, c[off:])
	}
}

// Process serves one descriptor chain and returns the number of bytes it
// wrote into the chain's device-writable buffers (the used-ring length).
// A chain with no writable byte cannot be answered; it completes with 0.
func (d *Disk) Process(chain []Segment) uint32 {
	req, err := parse(chain)
	if req.status == nil {
		d.log.Warn("virtio-blk: dropping request", "err", err)
		return 0
	}
	status := byte(StatusIOErr)
	written := uint32(1) // the status byte
	if err != nil {
		d.log.Debug("virtio-blk: bad request", "err", err)
	} else {
		var n uint64
		status, n = d.serve(req)
		written += uint32(min(n, uint64(^uint32(0)-1)))
	}
	*req.status = status
	return written
}

// serve executes a well-formed request; it returns the status and how many
// data bytes it wrote for the guest.
func (d *Disk) serve(req request) (byte, uint64) {
	switch req.typ {
	case TypeIn:
		if err := checkRange(req.sector, req.length, d.capacity); err != nil {
			d.log.Debug("virtio-blk: read", "err", err)
			return StatusIOErr, 0
		}
		if err := d.rw(req, false); err != nil {
			d.log.Warn("virtio-blk: read", "sector", req.sector, "err", err)
			return StatusIOErr, 0
		}
		return StatusOK, req.length
	case TypeOut:
		if d.readOnly {
			return StatusIOErr, 0
		}
		if err := checkRange(req.sector, req.length, d.capacity); err != nil {
			d.log.Debug("virtio-blk: write", "err", err)
			return StatusIOErr, 0
		}
		if err := d.rw(req, true); err != nil {
			d.log.Warn("virtio-blk: write", "sector", req.sector, "err", err)
			return StatusIOErr, 0
		}
		return StatusOK, 0
	case TypeFlush:
		if err := d.img.Flush(); err != nil {
			d.log.Warn("virtio-blk: flush", "err", err)
			return StatusIOErr, 0
		}
		return StatusOK, 0
	case TypeGetID:
		n := 0
		for _, b := range req.data {
			n += copy(b, d.id[n:])
		}
		return StatusOK, uint64(n)
	case TypeDiscard, TypeWriteZeroes:
		if d.readOnly {
			return StatusIOErr, 0
		}
		spans, err := parseSpans(req.data, req.length, MaxSpans, d.capacity)
		if err != nil {
			d.log.Debug("virtio-blk: ranges", "err", err)
			return StatusIOErr, 0
		}
		for _, s := range spans {
			if req.typ == TypeDiscard && s.flags != 0 {
				return StatusUnsupp, 0
			}
			if req.typ == TypeWriteZeroes && s.flags&^flagUnmap != 0 {
				return StatusUnsupp, 0
			}
			if err := d.zero(s, req.typ == TypeDiscard); err != nil {
				d.log.Warn("virtio-blk: discard/write-zeroes", "sector", s.sector, "err", err)
				return StatusIOErr, 0
			}
		}
		return StatusOK, 0
	}
	return StatusUnsupp, 0
}

// rw moves the request's data between guest memory and the image.
func (d *Disk) rw(req request, write bool) error {
	if write {
		return d.img.WriteV(req.data, req.sector*SectorSize)
	}
	return d.img.ReadV(req.data, req.sector*SectorSize)
}

// zero deallocates (discard) or zeroes a range, never changing the file size.
func (d *Disk) zero(s span, discard bool) error {
	off, n := s.sector*SectorSize, uint64(s.sectors)*SectorSize
	if discard {
		return d.img.Discard(off, n)
	}
	return d.img.WriteZeroes(off, n)
}

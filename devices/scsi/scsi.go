// Package scsi is a SCSI direct-access block device (a disk LUN) over a
// storage/block image, for host adapters that carry SCSI commands (the
// Hyper-V synthetic SCSI controller, devices/vmbus/storvsc). It decodes
// CDBs (SPC-4, SBC-3), moves data straight between the image and the
// guest's buffers and answers errors with fixed-format sense data.
//
// Commands: TEST UNIT READY, REQUEST SENSE, INQUIRY (standard data and the
// VPD pages 0x00, 0x80 unit serial, 0x83 device identification, 0xB0
// block limits, 0xB1 block device characteristics, 0xB2 logical block
// provisioning), REPORT LUNS (at the Target), READ CAPACITY(10/16),
// READ/WRITE(6/10/16), VERIFY(10/16), SYNCHRONIZE CACHE(10/16) (a Flush of
// the image: fdatasync), MODE SENSE(6/10) (caching page with WCE, control
// page; the WP bit on a read-only disk), START STOP UNIT and PREVENT ALLOW
// MEDIUM REMOVAL (accepted), and where the image can punch holes UNMAP and
// WRITE SAME(10/16). A write to a read-only disk ends in DATA PROTECT;
// anything else unknown in ILLEGAL REQUEST / INVALID COMMAND OPERATION
// CODE.
//
// Every CDB, transfer length and allocation length is guest input: ranges
// are checked against the disk and against the buffer the adapter gave,
// and nothing is allocated from a guest-chosen length beyond MaxTransfer.
package scsi

import (
	"encoding/binary"
	"hash/fnv"
	"log/slog"
	"sync/atomic"

	"github.com/vmmdev/vmm/storage/block"
)

// BlockSize is the logical block size a Disk exposes.
const BlockSize = block.SectorSize

// Operation codes (SPC-4, SBC-3).
const (
	OpTestUnitReady   = 0x00
	OpRequestSense    = 0x03
	OpRead6           = 0x08
	OpWrite6          = 0x0a
	OpInquiry         = 0x12
	OpModeSense6      = 0x1a
	OpStartStop       = 0x1b
	OpPreventAllow    = 0x1e
	OpReadCapacity10  = 0x25
	OpRead10          = 0x28
	OpWrite10         = 0x2a
	OpVerify10        = 0x2f
	OpSyncCache10     = 0x35
	OpWriteSame10     = 0x41
	OpUnmap           = 0x42
	OpModeSense10     = 0x5a
	OpRead16          = 0x88
	OpWrite16         = 0x8a
	OpVerify16        = 0x8f
	OpSyncCache16     = 0x91
	OpWriteSame16     = 0x93
	OpServiceActionIn = 0x9e // SA 0x10: READ CAPACITY(16)
	OpReportLUNs      = 0xa0
	saReadCapacity16  = 0x10
)

// Status is the SCSI status byte.
type Status byte

// Status values (SAM-5).
const (
	StatusGood           Status = 0x00
	StatusCheckCondition Status = 0x02
)

// Sense keys and additional sense codes used here.
const (
	KeyNoSense        = 0x0
	KeyMediumError    = 0x3
	KeyHardwareError  = 0x4
	KeyIllegalRequest = 0x5
	KeyDataProtect    = 0x7

	ASCWriteError        = 0x0c
	ASCUnrecoveredRead   = 0x11
	ASCParameterListLen  = 0x1a
	ASCInvalidOpcode     = 0x20
	ASCLBAOutOfRange     = 0x21
	ASCInvalidFieldCDB   = 0x24
	ASCInvalidFieldParam = 0x26
	ASCWriteProtected    = 0x27
	ASCSavingUnsupported = 0x39
)

// SenseSize is the size of the fixed-format sense data a Result carries.
const SenseSize = 18

// MaxTransfer bounds one command's data (the adapter advertises it; a
// larger request is refused before anything is read or allocated).
const MaxTransfer = 1 << 20

// Sense is a sense key with its additional sense code and qualifier.
type Sense struct{ Key, ASC, ASCQ byte }

// Bytes is the fixed-format (0x70, current error) sense data.
func (s Sense) Bytes() []byte {
	b := make([]byte, SenseSize)
	b[0] = 0x70
	b[2] = s.Key
	b[7] = SenseSize - 8
	b[12] = s.ASC
	b[13] = s.ASCQ
	return b
}

// Result is how a command ended.
type Result struct {
	Status Status
	// Sense is valid when Status is StatusCheckCondition.
	Sense Sense
	// N is the number of bytes moved to or from the buffer.
	N int
}

func good(n int) Result { return Result{Status: StatusGood, N: n} }

func check(key, asc, ascq byte) Result {
	return Result{Status: StatusCheckCondition, Sense: Sense{key, asc, ascq}}
}

func illegal(asc byte) Result { return check(KeyIllegalRequest, asc, 0) }

// Buffer is the command's data buffer in guest memory: segments in order.
type Buffer [][]byte

// Len is the buffer's size in bytes.
func (b Buffer) Len() int {
	n := 0
	for _, s := range b {
		n += len(s)
	}
	return n
}

// Trim returns the first n bytes of the buffer (n <= Len).
func (b Buffer) Trim(n int) Buffer {
	var out Buffer
	for _, s := range b {
		if n == 0 {
			break
		}
		k := min(n, len(s))
		out = append(out, s[:k])
		n -= k
	}
	return out
}

// copyIn copies src into the buffer and returns the bytes copied.
func (b Buffer) copyIn(src []byte) int {
	n := 0
	for _, s := range b {
		if len(src) == 0 {
			break
		}
		k := copy(s, src)
		src = src[k:]
		n += k
	}
	return n
}

// gather copies up to n bytes of the buffer out (guest memory may change
// under a parser: it reads only this copy).
func (b Buffer) gather(n int) []byte {
	out := make([]byte, 0, min(n, b.Len()))
	for _, s := range b {
		if len(out) == n {
			break
		}
		out = append(out, s[:min(len(s), n-len(out))]...)
	}
	return out
}

// Stats counts a disk's commands.
type Stats struct {
	Commands        uint64 `json:"commands"`
	Reads           uint64 `json:"reads"`
	Writes          uint64 `json:"writes"`
	BytesRead       uint64 `json:"bytes_read"`
	BytesWritten    uint64 `json:"bytes_written"`
	Flushes         uint64 `json:"flushes"`
	Unmaps          uint64 `json:"unmaps"`
	CheckConditions uint64 `json:"check_conditions"`
}

type counters struct {
	commands, reads, writes, bytesRead, bytesWritten, flushes, unmaps, checks atomic.Uint64
}

// Disk is one LUN. Its methods are safe for concurrent use.
type Disk struct {
	img    block.Device
	serial string
	naa    [8]byte
	log    *slog.Logger
	name   string
	stats  counters
}

// NewDisk exposes img as a disk whose unit serial number is serial (name
// labels log lines).
func NewDisk(name string, img block.Device, serial string, log *slog.Logger) *Disk {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Disk{img: img, serial: serial, log: log, name: name}
	// A stable NAA identifier from the serial: NAA 6 (IEEE registered
	// extended) with a locally made-up company id, as virtual disks do.
	h := fnv.New64a()
	h.Write([]byte(serial))
	binary.BigEndian.PutUint64(d.naa[:], h.Sum64())
	d.naa[0] = 0x60 | d.naa[0]&0x0f
	return d
}

// Image is the disk's image.
func (d *Disk) Image() block.Device { return d.img }

// Stats returns the disk's counters.
func (d *Disk) Stats() Stats {
	c := &d.stats
	return Stats{Commands: c.commands.Load(), Reads: c.reads.Load(), Writes: c.writes.Load(),
		BytesRead: c.bytesRead.Load(), BytesWritten: c.bytesWritten.Load(), Flushes: c.flushes.Load(),
		Unmaps: c.unmaps.Load(), CheckConditions: c.checks.Load()}
}

// blocks is the disk's size in logical blocks.
func (d *Disk) blocks() uint64 { return d.img.Size() / BlockSize }

// Execute runs one command. buf is the data buffer: where data-in
// commands put their answer (at most buf.Len() bytes) and where data-out
// commands take their data from.
func (d *Disk) Execute(cdb []byte, buf Buffer) Result {
	d.stats.commands.Add(1)
	r := d.execute(cdb, buf)
	if r.Status != StatusGood {
		d.stats.checks.Add(1)
	}
	return r
}

func (d *Disk) execute(cdb []byte, buf Buffer) Result {
	if len(cdb) == 0 {
		return illegal(ASCInvalidOpcode)
	}
	if len(cdb) < cdbLen(cdb[0]) {
		return illegal(ASCInvalidFieldCDB)
	}
	switch cdb[0] {
	case OpTestUnitReady, OpStartStop, OpPreventAllow:
		return good(0)
	case OpRequestSense:
		// Sense goes back with each failed command (autosense): there
		// is never one pending.
		return d.reply(Sense{}.Bytes(), int(cdb[4]), buf)
	case OpInquiry:
		return d.inquiry(cdb, buf)
	case OpReadCapacity10:
		b := make([]byte, 8)
		last := d.blocks() - 1
		binary.BigEndian.PutUint32(b[0:], uint32(min(last, 0xffffffff)))
		binary.BigEndian.PutUint32(b[4:], BlockSize)
		return d.reply(b, len(b), buf)
	case OpServiceActionIn:
		if cdb[1]&0x1f != saReadCapacity16 {
			return illegal(ASCInvalidFieldCDB)
		}
		return d.readCapacity16(cdb, buf)
	case OpModeSense6, OpModeSense10:
		return d.modeSense(cdb, buf)
	case OpRead6, OpRead10, OpRead16:
		return d.readWrite(cdb, buf, false)
	case OpWrite6, OpWrite10, OpWrite16:
		return d.readWrite(cdb, buf, true)
	case OpVerify10, OpVerify16:
		// BYTCHK 0: the medium is checked, which an image always passes.
		if cdb[1]&0x06 != 0 {
			return illegal(ASCInvalidFieldCDB)
		}
		if _, _, r, ok := d.lbaRange(cdb); !ok {
			return r
		}
		return good(0)
	case OpSyncCache10, OpSyncCache16:
		d.stats.flushes.Add(1)
		if err := d.img.Flush(); err != nil {
			d.log.Warn("scsi: synchronize cache", "disk", d.name, "err", err)
			return check(KeyMediumError, ASCWriteError, 0)
		}
		return good(0)
	case OpUnmap:
		if !d.img.CanPunchHoles() {
			return illegal(ASCInvalidOpcode)
		}
		return d.unmap(cdb, buf)
	case OpWriteSame10, OpWriteSame16:
		if !d.img.CanPunchHoles() {
			return illegal(ASCInvalidOpcode)
		}
		return d.writeSame(cdb, buf)
	}
	return illegal(ASCInvalidOpcode)
}

// cdbLen is the length of a CDB by its group code (SPC-4 4.2.5.1); 0 for
// groups of no fixed length (then the command's own checks apply).
func cdbLen(op byte) int {
	switch op >> 5 {
	case 0:
		return 6
	case 1, 2:
		return 10
	case 4:
		return 16
	case 5:
		return 12
	}
	return 1
}

// reply copies data to the buffer, at most alloc bytes of it.
func (d *Disk) reply(data []byte, alloc int, buf Buffer) Result {
	if alloc < len(data) {
		data = data[:alloc]
	}
	return good(buf.copyIn(data))
}

// lbaRange decodes a READ/WRITE/VERIFY/WRITE SAME CDB's LBA and block
// count and checks them against the disk.
func (d *Disk) lbaRange(cdb []byte) (lba, n uint64, r Result, ok bool) {
	switch cdbLen(cdb[0]) {
	case 6:
		lba = uint64(binary.BigEndian.Uint32(cdb[0:]) & 0x1fffff)
		n = uint64(cdb[4])
		if n == 0 {
			n = 256 // READ/WRITE(6): 0 means 256 blocks
		}
	case 10:
		lba = uint64(binary.BigEndian.Uint32(cdb[2:]))
		n = uint64(binary.BigEndian.Uint16(cdb[7:]))
	default:
		lba = binary.BigEndian.Uint64(cdb[2:])
		n = uint64(binary.BigEndian.Uint32(cdb[10:]))
	}
	if total := d.blocks(); lba > total || n > total-lba {
		return 0, 0, illegal(ASCLBAOutOfRange), false
	}
	return lba, n, Result{}, true
}

func (d *Disk) readWrite(cdb []byte, buf Buffer, write bool) Result {
	lba, n, r, ok := d.lbaRange(cdb)
	if !ok {
		return r
	}
	if write && d.img.ReadOnly() {
		return check(KeyDataProtect, ASCWriteProtected, 0)
	}
	bytes := n * BlockSize
	if bytes > MaxTransfer || bytes > uint64(buf.Len()) {
		return illegal(ASCInvalidFieldCDB)
	}
	if n == 0 {
		return good(0)
	}
	bufs := buf.Trim(int(bytes))
	off := lba * BlockSize
	if !write {
		if err := d.img.ReadV(bufs, off); err != nil {
			d.log.Warn("scsi: read", "disk", d.name, "offset", off, "err", err)
			return check(KeyMediumError, ASCUnrecoveredRead, 0)
		}
		d.stats.reads.Add(1)
		d.stats.bytesRead.Add(bytes)
		return good(int(bytes))
	}
	if err := d.img.WriteV(bufs, off); err != nil {
		d.log.Warn("scsi: write", "disk", d.name, "offset", off, "err", err)
		return check(KeyMediumError, ASCWriteError, 0)
	}
	d.stats.writes.Add(1)
	d.stats.bytesWritten.Add(bytes)
	// FUA (byte 1 bit 3 of the 10 and 16 byte forms): durable before done.
	if len(cdb) >= 10 && cdbLen(cdb[0]) >= 10 && cdb[1]&0x08 != 0 {
		d.stats.flushes.Add(1)
		if err := d.img.Flush(); err != nil {
			return check(KeyMediumError, ASCWriteError, 0)
		}
	}
	return good(int(bytes))
}

func (d *Disk) readCapacity16(cdb []byte, buf Buffer) Result {
	b := make([]byte, 32)
	binary.BigEndian.PutUint64(b[0:], d.blocks()-1)
	binary.BigEndian.PutUint32(b[8:], BlockSize)
	if d.img.CanPunchHoles() {
		b[14] = 0x80 | 0x40 // LBPME, LBPRZ: unmapped blocks read as zeros
	}
	return d.reply(b, int(binary.BigEndian.Uint32(cdb[10:])), buf)
}

// unmap deallocates the block descriptors of the parameter list.
func (d *Disk) unmap(cdb []byte, buf Buffer) Result {
	if d.img.ReadOnly() {
		return check(KeyDataProtect, ASCWriteProtected, 0)
	}
	plen := int(binary.BigEndian.Uint16(cdb[7:]))
	if plen == 0 {
		return good(0)
	}
	if plen < 8 || plen > buf.Len() {
		return illegal(ASCParameterListLen)
	}
	p := buf.gather(plen)
	dlen := int(binary.BigEndian.Uint16(p[2:]))
	if dlen%16 != 0 || 8+dlen > plen || dlen/16 > maxUnmapDescriptors {
		return illegal(ASCInvalidFieldParam)
	}
	total := d.blocks()
	descs := p[8 : 8+dlen]
	for i := 0; i < len(descs); i += 16 {
		lba, n := binary.BigEndian.Uint64(descs[i:]), uint64(binary.BigEndian.Uint32(descs[i+8:]))
		if lba > total || n > total-lba {
			return illegal(ASCLBAOutOfRange)
		}
	}
	for i := 0; i < len(descs); i += 16 {
		lba, n := binary.BigEndian.Uint64(descs[i:]), uint64(binary.BigEndian.Uint32(descs[i+8:]))
		if n == 0 {
			continue
		}
		if err := d.img.Discard(lba*BlockSize, n*BlockSize); err != nil {
			d.log.Warn("scsi: unmap", "disk", d.name, "lba", lba, "err", err)
			return check(KeyMediumError, ASCWriteError, 0)
		}
		d.stats.unmaps.Add(1)
	}
	return good(plen)
}

// writeSame writes the buffer's one block over the range: zeros (what
// Linux sends, with or without UNMAP) deallocate through WriteZeroes;
// other data is written block by block.
func (d *Disk) writeSame(cdb []byte, buf Buffer) Result {
	if cdb[1]&0x01 != 0 { // NDOB (16 only) is refused as the other obsolete bits
		return illegal(ASCInvalidFieldCDB)
	}
	lba, n, r, ok := d.lbaRange(cdb)
	if !ok {
		return r
	}
	if d.img.ReadOnly() {
		return check(KeyDataProtect, ASCWriteProtected, 0)
	}
	if n == 0 || n > maxWriteSame {
		// 0 asks for the whole rest of the disk: refused, as the limit
		// in the block limits page says.
		return illegal(ASCInvalidFieldCDB)
	}
	if buf.Len() < BlockSize {
		return illegal(ASCInvalidFieldCDB)
	}
	blk := buf.gather(BlockSize)
	zero := true
	for _, c := range blk {
		zero = zero && c == 0
	}
	if zero {
		if err := d.img.WriteZeroes(lba*BlockSize, n*BlockSize); err != nil {
			d.log.Warn("scsi: write same", "disk", d.name, "lba", lba, "err", err)
			return check(KeyMediumError, ASCWriteError, 0)
		}
		d.stats.unmaps.Add(1)
		return good(BlockSize)
	}
	for i := uint64(0); i < n; i++ {
		if err := d.img.WriteV([][]byte{blk}, (lba+i)*BlockSize); err != nil {
			d.log.Warn("scsi: write same", "disk", d.name, "lba", lba+i, "err", err)
			return check(KeyMediumError, ASCWriteError, 0)
		}
	}
	d.stats.writes.Add(1)
	d.stats.bytesWritten.Add(n * BlockSize)
	return good(BlockSize)
}

// Limits the block limits VPD page announces.
const (
	maxUnmapDescriptors = 256
	maxUnmapBlocks      = 1 << 22 // 2 GiB per UNMAP
	maxWriteSame        = 1 << 22
)

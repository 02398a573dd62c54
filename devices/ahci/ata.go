package ahci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/vmmdev/vmm/storage/block"
)

// ATA commands (ACS-3).
const (
	ataNOP            = 0x00
	ataDSM            = 0x06
	ataDeviceReset    = 0x08
	ataReadSectorsExt = 0x24
	ataReadDMAExt     = 0x25
	ataReadLogExt     = 0x2f
	ataWriteSectExt   = 0x34
	ataWriteDMAExt    = 0x35
	ataReadVerify     = 0x40
	ataReadVerifyExt  = 0x42
	ataReadLogDMAExt  = 0x47
	ataReadFPDMA      = 0x60
	ataWriteFPDMA     = 0x61
	ataInitParams     = 0x91
	ataPacket         = 0xa0
	ataIdentifyPacket = 0xa1
	ataReadSectors    = 0x20
	ataWriteSectors   = 0x30
	ataSetMultiple    = 0xc6
	ataReadDMA        = 0xc8
	ataWriteDMA       = 0xca
	ataStandbyImm     = 0xe0
	ataIdleImm        = 0xe1
	ataStandby        = 0xe2
	ataIdle           = 0xe3
	ataCheckPower     = 0xe5
	ataSleep          = 0xe6
	ataFlushCache     = 0xe7
	ataFlushCacheExt  = 0xea
	ataIdentify       = 0xec
	ataSetFeatures    = 0xef
)

// Limits the device advertises.
const (
	sectorSize = block.SectorSize
	// dsmMaxBlocks is IDENTIFY word 105: 512-byte blocks of TRIM ranges
	// one DATA SET MANAGEMENT may carry (64 ranges each).
	dsmMaxBlocks = 8
	// Default strings.
	firmwareRev = "1.0"
	diskModel   = "VMM HARDDISK"
	cdromModel  = "VMM DVD-ROM"
)

// General Purpose Logging (ACS-3 A.1): the logs READ LOG EXT and READ LOG
// DMA EXT read, each one 512-byte page.
const (
	logDirectory = 0x00
	// logNCQError is the NCQ Command Error log (SATA 3.x 13.7.4).
	logNCQError = 0x10
	// ncqErrNQ is its NQ bit: no queued command's error is reported.
	ncqErrNQ = 0x80
)

// logPages is the size of a log in pages, 0 for one the device lacks.
func logPages(log byte) uint64 {
	switch log {
	case logDirectory, logNCQError:
		return 1
	}
	return 0
}

// ncqFailure is what the NCQ Command Error log reports about the queued
// command that failed: its tag and the registers of its ending.
type ncqFailure struct {
	tag            int
	status, errReg byte
	lba            uint64
	count          uint16
	device         byte
}

func isNCQ(cmd byte) bool { return cmd == ataReadFPDMA || cmd == ataWriteFPDMA }

// device is a SATA disk or an ATAPI drive on a port.
type device struct {
	img     block.Device
	atapi   bool
	serial  string
	sectors uint64 // 512-byte sectors (disk) or 2048-byte blocks (ATAPI)
	trim    bool

	// mu guards the state commands change; NCQ commands run together.
	mu    sync.Mutex
	wce   bool  // volatile write cache on
	udma  int   // selected UDMA mode, -1 for none
	sense sense // ATAPI sense data for REQUEST SENSE
	// ncqErr is a queued command's failure the host has not read yet:
	// until it reads log 10h or resets the device, every other command
	// aborts (SATA 3.x 13.6.3.3), so nothing runs on a queue the host has
	// not made sense of.
	ncqErr *ncqFailure
}

func newDevice(d Drive) (*device, error) {
	if len(d.Serial) > 20 {
		return nil, fmt.Errorf("serial %q is longer than 20 bytes", d.Serial)
	}
	dev := &device{img: d.Image, atapi: d.CDROM, serial: d.Serial}
	if d.CDROM {
		dev.sectors = d.Image.Size() / cdBlock
		if dev.sectors == 0 {
			return nil, fmt.Errorf("CD-ROM image %s is smaller than one 2048-byte block", d.Image.Path())
		}
	} else {
		dev.sectors = d.Image.Sectors()
		dev.trim = d.Image.CanPunchHoles()
	}
	dev.reset()
	return dev, nil
}

// reset is a device reset: settings back to power-on defaults.
func (d *device) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wce, d.udma, d.sense, d.ncqErr = true, 5, sense{}, nil
}

// noteNCQError records the first failure of a queued command for log 10h.
func (d *device) noteNCQError(tag int, f h2d, r result) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ncqErr != nil {
		return
	}
	d.ncqErr = &ncqFailure{tag: tag, status: r.status, errReg: r.errReg, lba: f.lba, count: f.feat, device: f.device}
}

func (d *device) ncqErrorPending() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ncqErr != nil
}

// signatureRegs puts the device's signature in a D2H FIS's registers.
func (d *device) signatureRegs(r result) result {
	r.count, r.lba = 1, 1
	if d.atapi {
		r.lba = 0xeb1401
	}
	r.sig = true
	return r
}

// execute runs one ATA command.
func (d *device) execute(c *command) result {
	f := c.f
	if d.atapi {
		switch f.cmd {
		case ataPacket:
			return d.packet(c)
		case ataIdentifyPacket:
			return d.identify(c)
		case ataDeviceReset:
			d.reset()
			return d.signatureRegs(good())
		case ataCheckPower:
			r := good()
			r.count = 0xff
			return r
		case ataIdleImm, ataStandbyImm, ataIdle, ataStandby, ataSetFeatures:
			return d.setFeaturesOrIdle(c)
		}
		// Anything else aborts with the signature in the registers, so a
		// driver sending IDENTIFY DEVICE learns it talks to ATAPI.
		return d.signatureRegs(abort())
	}
	switch {
	case f.cmd == ataReadLogExt || f.cmd == ataReadLogDMAExt:
		return d.readLog(c)
	case d.ncqErrorPending():
		return abort()
	}
	switch f.cmd {
	case ataIdentify:
		return d.identify(c)
	case ataReadDMAExt, ataReadSectorsExt, ataReadDMA, ataReadSectors, ataReadFPDMA:
		return d.readWrite(c, false)
	case ataWriteDMAExt, ataWriteSectExt, ataWriteDMA, ataWriteSectors, ataWriteFPDMA:
		return d.readWrite(c, true)
	case ataFlushCache, ataFlushCacheExt:
		if err := d.img.Flush(); err != nil {
			return abort()
		}
		return good()
	case ataSetFeatures, ataIdleImm, ataStandbyImm, ataIdle, ataStandby:
		return d.setFeaturesOrIdle(c)
	case ataDSM:
		return d.trimRanges(c)
	case ataCheckPower:
		r := good()
		r.count = 0xff // active or idle
		return r
	case ataReadVerify, ataReadVerifyExt:
		lba, n := d.range28or48(f, f.cmd == ataReadVerifyExt)
		if lba+n > d.sectors {
			return idnf()
		}
		return good()
	case ataInitParams, ataSetMultiple:
		return good()
	}
	// NOP, PACKET, WRITE LOG EXT (no log is writable), SMART, security,
	// HPA and everything else: aborted.
	return abort()
}

func idnf() result { return result{status: statOK | statERR, errReg: errIDNF} }

// readLog is READ LOG EXT (PIO) and READ LOG DMA EXT: LBA 7:0 names the
// log, LBA 15:8 and 39:32 the first page, the count the pages. A log the
// device lacks, a count of 0 and pages past the log's end abort. Reading
// log 10h ends a queued command's error; while one is pending, no other
// log can be read.
func (d *device) readLog(c *command) result {
	f := c.f
	log, page, n := byte(f.lba), f.lba>>8&0xff|f.lba>>32&0xff<<8, uint64(f.count)
	d.mu.Lock()
	defer d.mu.Unlock()
	pages := logPages(log)
	if d.ncqErr != nil && log != logNCQError || n == 0 || page >= pages || n > pages-page {
		return abort()
	}
	data := make([]byte, pages*sectorSize)
	switch log {
	case logDirectory:
		for l := range 256 {
			binary.LittleEndian.PutUint16(data[2*l:], uint16(logPages(byte(l))))
		}
		binary.LittleEndian.PutUint16(data, 1) // word 0: GPL version, not a count
	case logNCQError:
		d.ncqErrorPageLocked(data)
	}
	got, err := c.dataIn(data[page*sectorSize : (page+n)*sectorSize])
	if err != nil {
		return hostError()
	}
	if log == logNCQError {
		d.ncqErr = nil
	}
	r := good()
	r.n, r.pio = got, f.cmd == ataReadLogExt
	return r
}

// ncqErrorPageLocked fills log 10h: the failed queued command's tag and
// ending registers, or only NQ when none failed; byte 511 makes the page
// sum to 0.
func (d *device) ncqErrorPageLocked(b []byte) {
	if e := d.ncqErr; e == nil {
		b[0] = ncqErrNQ
	} else {
		b[0] = byte(e.tag & 31)
		b[2], b[3] = e.status, e.errReg
		b[4], b[5], b[6] = byte(e.lba), byte(e.lba>>8), byte(e.lba>>16)
		b[7] = e.device
		b[8], b[9], b[10] = byte(e.lba>>24), byte(e.lba>>32), byte(e.lba>>40)
		b[12], b[13] = byte(e.count), byte(e.count>>8)
	}
	var sum byte
	for _, v := range b[:511] {
		sum += v
	}
	b[511] = -sum
}

// range28or48 decodes LBA and sector count; a count of 0 means 256 or 65536.
func (d *device) range28or48(f h2d, ext bool) (lba, n uint64) {
	if ext {
		lba, n = f.lba, uint64(f.count)
		if n == 0 {
			n = 65536
		}
		return lba, n
	}
	lba = f.lba&0xffffff | uint64(f.device&0xf)<<24
	n = uint64(f.count & 0xff)
	if n == 0 {
		n = 256
	}
	return lba, n
}

// readWrite moves sectors between the image and the PRDT; the transfer
// goes straight between guest memory and the file.
func (d *device) readWrite(c *command, write bool) result {
	f := c.f
	var lba, n uint64
	fua := false
	switch f.cmd {
	case ataReadFPDMA, ataWriteFPDMA:
		lba, n = f.lba, uint64(f.feat)
		if n == 0 {
			n = 65536
		}
		fua = f.device&0x80 != 0
	case ataReadDMAExt, ataWriteDMAExt, ataReadSectorsExt, ataWriteSectExt:
		lba, n = d.range28or48(f, true)
	default:
		lba, n = d.range28or48(f, false)
	}
	if lba > d.sectors || n > d.sectors-lba {
		return idnf()
	}
	need := n * sectorSize
	bufs, got, err := c.buffers(need)
	if err != nil {
		return hostError()
	}
	if got < need {
		// The PRDT cannot hold the transfer the FIS asks for.
		return abort()
	}
	r := good()
	r.pio = f.cmd == ataReadSectors || f.cmd == ataReadSectorsExt
	if write {
		if err := d.img.WriteV(bufs, lba*sectorSize); err != nil {
			if errors.Is(err, block.ErrReadOnly) {
				return result{status: statOK | statERR, errReg: errWP, lba: lba}
			}
			return result{status: statOK | statERR, errReg: errABRT, lba: lba}
		}
		d.mu.Lock()
		wce := d.wce
		d.mu.Unlock()
		if fua || !wce {
			if err := d.img.Flush(); err != nil {
				return abort()
			}
		}
	} else if err := d.img.ReadV(bufs, lba*sectorSize); err != nil {
		return result{status: statOK | statERR, errReg: errUNC, lba: lba}
	}
	r.n = uint32(need)
	return r
}

// setFeaturesOrIdle handles SET FEATURES and the power commands, which
// only need an answer.
func (d *device) setFeaturesOrIdle(c *command) result {
	f := c.f
	if f.cmd != ataSetFeatures {
		return good()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch byte(f.feat) {
	case 0x02: // enable volatile write cache
		if d.atapi {
			return abort()
		}
		d.wce = true
	case 0x82:
		if d.atapi {
			return abort()
		}
		d.wce = false
	case 0x03: // transfer mode, in the count register
		switch mode := byte(f.count); {
		case mode <= 0x01, mode&0xf8 == 0x08 && mode&7 <= 4, mode&0xf8 == 0x20 && mode&7 <= 2:
			d.udma = -1
		case mode&0xf8 == 0x40 && mode&7 <= 6:
			d.udma = int(mode & 7)
		default:
			return abort()
		}
	case 0x55, 0xaa, 0x66, 0xcc: // read look-ahead, revert to defaults
	case 0x10, 0x90: // SATA features: none is offered, accepting is harmless
	default:
		return abort()
	}
	return good()
}

// trimRanges is DATA SET MANAGEMENT with the TRIM bit: each 8-byte entry
// is LBA 47:0 and a length 63:48 (0 ends nothing, it is skipped).
func (d *device) trimRanges(c *command) result {
	f := c.f
	blocks := uint64(f.count)
	if !d.trim || f.feat&1 == 0 || blocks == 0 || blocks > dsmMaxBlocks {
		return abort()
	}
	data, err := c.dataOut(blocks * sectorSize)
	if err != nil {
		return hostError()
	}
	if uint64(len(data)) < blocks*sectorSize {
		return abort()
	}
	for i := 0; i+8 <= len(data); i += 8 {
		e := binary.LittleEndian.Uint64(data[i:])
		lba, n := e&(1<<48-1), e>>48
		if n == 0 {
			continue
		}
		if lba > d.sectors || n > d.sectors-lba {
			return idnf()
		}
		if err := d.img.Discard(lba*sectorSize, n*sectorSize); err != nil {
			return abort()
		}
	}
	r := good()
	r.n = uint32(len(data))
	return r
}

// identify answers IDENTIFY DEVICE or IDENTIFY PACKET DEVICE (PIO data-in).
func (d *device) identify(c *command) result {
	var id [256]uint16
	if d.atapi {
		d.identifyPacketWords(&id)
	} else {
		d.identifyWords(&id)
	}
	b := make([]byte, 512)
	var sum byte
	id[255] = 0xa5
	for i, w := range id[:255] {
		binary.LittleEndian.PutUint16(b[2*i:], w)
	}
	b[510] = 0xa5
	for _, v := range b[:511] {
		sum += v
	}
	b[511] = -sum
	n, err := c.dataIn(b)
	if err != nil {
		return hostError()
	}
	r := good()
	r.n, r.pio = n, true
	return r
}

// putString writes an ATA string: ASCII, space padded, bytes swapped in
// each word.
func putString(id []uint16, s string) {
	b := make([]byte, 2*len(id))
	for i := range b {
		b[i] = ' '
	}
	copy(b, s)
	for i := range id {
		id[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
	}
}

func (d *device) identifyWords(id *[256]uint16) {
	d.mu.Lock()
	wce, udma := d.wce, d.udma
	d.mu.Unlock()
	n := d.sectors
	id[0] = 0x0040 // fixed, not removable
	cyl := min(n/(16*63), 16383)
	id[1], id[3], id[6] = uint16(cyl), 16, 63
	putString(id[10:20], d.serial)
	putString(id[23:27], firmwareRev)
	putString(id[27:47], diskModel)
	id[47] = 0x8010
	id[49] = 0x0300 // LBA, DMA
	id[50] = 0x4000
	id[53] = 0x0006 // words 64-70 and 88 valid
	id[59] = 0x0110
	lba28 := min(n, 0x0fffffff)
	id[60], id[61] = uint16(lba28), uint16(lba28>>16)
	id[63] = 0x0007
	id[64] = 0x0003
	id[65], id[66], id[67], id[68] = 120, 120, 120, 120
	if d.trim {
		id[69] = 1<<14 | 1<<5 // deterministic read after TRIM, zeros
	}
	id[75] = maxNCQTags - 1
	id[76] = 1<<8 | 1<<2 | 1<<1 // NCQ, Gen2, Gen1
	id[80] = 0x01f0             // ATA/ATAPI-4 to ATA8-ACS
	id[82] = 1<<14 | 1<<6 | 1<<5 | 1<<3
	id[83] = 1<<14 | 1<<13 | 1<<12 | 1<<10 // FLUSH CACHE EXT, FLUSH CACHE, LBA48
	id[84] = 1<<14 | 1<<5                  // GPL
	id[85] = 1<<14 | 1<<6 | 1<<3
	if wce {
		id[85] |= 1 << 5
	}
	id[86] = 1<<15 | 1<<13 | 1<<12 | 1<<10 // words 119-120 valid
	id[87] = 1<<14 | 1<<5                  // GPL
	id[88] = 0x003f
	if udma >= 0 {
		id[88] |= 1 << (8 + udma)
	}
	id[119] = 1<<14 | 1<<3 // READ LOG DMA EXT
	id[120] = 1<<14 | 1<<3
	id[100], id[101], id[102], id[103] = uint16(n), uint16(n>>16), uint16(n>>32), uint16(n>>48)
	id[106] = 0x4000 // one 512-byte logical sector per physical sector
	if d.trim {
		id[105] = dsmMaxBlocks
		id[169] = 1
	}
	id[217] = 1 // not rotating
}

func (d *device) identifyPacketWords(id *[256]uint16) {
	d.mu.Lock()
	udma := d.udma
	d.mu.Unlock()
	id[0] = 0x85c0 // ATAPI, CD-ROM, removable, 12-byte packets
	putString(id[10:20], d.serial)
	putString(id[23:27], firmwareRev)
	putString(id[27:47], cdromModel)
	id[49] = 0x0300
	id[53] = 0x0006
	id[63] = 0x0007
	id[64] = 0x0003
	id[65], id[66], id[67], id[68] = 120, 120, 120, 120
	id[76] = 1<<2 | 1<<1
	id[80] = 0x01f0
	id[82] = 1<<14 | 1<<9 | 1<<4 // NOP, DEVICE RESET, PACKET
	id[83] = 1 << 14
	id[84] = 1 << 14
	id[85] = 1<<14 | 1<<9 | 1<<4
	id[87] = 1 << 14
	id[88] = 0x003f
	if udma >= 0 {
		id[88] |= 1 << (8 + udma)
	}
}

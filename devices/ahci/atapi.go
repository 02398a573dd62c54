package ahci

import (
	"encoding/binary"
)

// cdBlock is an ATAPI drive's logical block.
const cdBlock = 2048

// SCSI/MMC operation codes.
const (
	scsiTestUnitReady     = 0x00
	scsiRequestSense      = 0x03
	scsiInquiry           = 0x12
	scsiStartStop         = 0x1b
	scsiPreventAllow      = 0x1e
	scsiReadFormatCaps    = 0x23
	scsiReadCapacity      = 0x25
	scsiRead10            = 0x28
	scsiSeek10            = 0x2b
	scsiSyncCache         = 0x35
	scsiReadSubChannel    = 0x42
	scsiReadTOC           = 0x43
	scsiGetConfiguration  = 0x46
	scsiGetEventStatus    = 0x4a
	scsiReadDiscInfo      = 0x51
	scsiModeSense10       = 0x5a
	scsiRead12            = 0xa8
	scsiSetCDSpeed        = 0xbb
	scsiMechanismStatus   = 0xbd
	scsiReadCD            = 0xbe
	senseIllegalRequest   = 0x05
	senseNotReady         = 0x02
	ascInvalidOpcode      = 0x20
	ascLBAOutOfRange      = 0x21
	ascInvalidField       = 0x24
	ascSavingNotSupported = 0x39
	// Profiles (MMC-6 §5.3.1).
	profileCDROM  = 0x0008
	profileDVDROM = 0x0010
	// cdMaxBlocks is the most a CD holds (80 minutes); larger images are DVDs.
	cdMaxBlocks = 80 * 60 * 75
)

// sense is the sense key and additional sense code of the last command.
type sense struct{ key, asc, ascq byte }

// checkCondition ends an ATAPI command in error: the sense key goes in the
// error register and is kept for REQUEST SENSE.
func (d *device) checkCondition(s sense) result {
	d.mu.Lock()
	d.sense = s
	d.mu.Unlock()
	return result{status: statDRDY | statERR, errReg: s.key << 4}
}

func illegal(asc byte) sense { return sense{key: senseIllegalRequest, asc: asc} }

// packet runs the SCSI command in the CDB. Every answer is at most the
// allocation length and at most what the PRDT holds.
func (d *device) packet(c *command) result {
	cdb := c.cdb[:12]
	pio := c.f.feat&1 == 0 // features bit 0: DMA
	var data []byte
	switch cdb[0] {
	case scsiTestUnitReady, scsiStartStop, scsiPreventAllow, scsiSetCDSpeed, scsiSyncCache:
	case scsiRequestSense:
		d.mu.Lock()
		s := d.sense
		d.sense = sense{}
		d.mu.Unlock()
		data = make([]byte, 18)
		data[0], data[2], data[7], data[12], data[13] = 0x70, s.key, 10, s.asc, s.ascq
		data = limit(data, uint32(cdb[4]))
	case scsiInquiry:
		if cdb[1]&1 != 0 {
			return d.checkCondition(illegal(ascInvalidField))
		}
		data = make([]byte, 36)
		data[0], data[1], data[2], data[3], data[4] = 0x05, 0x80, 0x05, 0x32, 31
		copy(data[8:16], "VMM     ")
		copy(data[16:32], "VMM DVD-ROM     ")
		copy(data[32:36], "1.0 ")
		data = limit(data, uint32(binary.BigEndian.Uint16(cdb[3:])))
	case scsiReadCapacity:
		data = make([]byte, 8)
		binary.BigEndian.PutUint32(data, uint32(min(d.sectors-1, 0xffffffff)))
		binary.BigEndian.PutUint32(data[4:], cdBlock)
	case scsiReadFormatCaps:
		data = make([]byte, 12)
		data[3] = 8
		binary.BigEndian.PutUint32(data[4:], uint32(min(d.sectors, 0xffffffff)))
		data[8] = 2 // formatted media
		data[9], data[10], data[11] = 0, cdBlock>>8, 0
		data = limit(data, uint32(binary.BigEndian.Uint16(cdb[7:])))
	case scsiRead10, scsiRead12, scsiReadCD:
		return d.read(c, pio)
	case scsiSeek10:
		if uint64(binary.BigEndian.Uint32(cdb[2:])) >= d.sectors {
			return d.checkCondition(illegal(ascLBAOutOfRange))
		}
	case scsiReadSubChannel:
		data = []byte{0, 0x15, 0, 0} // no current audio status, no data
		data = limit(data, uint32(binary.BigEndian.Uint16(cdb[7:])))
	case scsiReadTOC:
		var ok bool
		if data, ok = d.toc(cdb); !ok {
			return d.checkCondition(illegal(ascInvalidField))
		}
	case scsiGetConfiguration:
		var ok bool
		if data, ok = d.configuration(cdb); !ok {
			return d.checkCondition(illegal(ascInvalidField))
		}
	case scsiGetEventStatus:
		if cdb[1]&1 == 0 {
			// Only polled operation exists.
			return d.checkCondition(illegal(ascInvalidField))
		}
		if cdb[4]&(1<<4) != 0 {
			// Media class: no change, media present, tray closed.
			data = []byte{0, 6, 4, 1 << 4, 0, 2, 0, 0}
		} else {
			data = []byte{0, 2, 0x80, 1 << 4} // no event available
		}
		data = limit(data, uint32(binary.BigEndian.Uint16(cdb[7:])))
	case scsiReadDiscInfo:
		if cdb[1]&7 != 0 {
			return d.checkCondition(illegal(ascInvalidField))
		}
		data = make([]byte, 34)
		data[1] = 32
		data[2] = 0x0e // last session complete, disc complete
		data[3], data[4], data[5], data[6] = 1, 1, 1, 1
		data[7] = 0x20 // unrestricted use
		binary.BigEndian.PutUint32(data[16:], 0xffffffff)
		binary.BigEndian.PutUint32(data[20:], 0xffffffff)
		data = limit(data, uint32(binary.BigEndian.Uint16(cdb[7:])))
	case scsiModeSense10:
		var s sense
		if data, s = modeSense(cdb); s.key != 0 {
			return d.checkCondition(s)
		}
	case scsiMechanismStatus:
		data = make([]byte, 8)
		data = limit(data, uint32(binary.BigEndian.Uint16(cdb[8:])))
	default:
		return d.checkCondition(illegal(ascInvalidOpcode))
	}
	r := good()
	if len(data) > 0 {
		n, err := c.dataIn(data)
		if err != nil {
			return hostError()
		}
		r.n, r.pio = n, pio
	}
	d.mu.Lock()
	if cdb[0] != scsiRequestSense {
		d.sense = sense{}
	}
	d.mu.Unlock()
	return r
}

func limit(b []byte, alloc uint32) []byte { return b[:min(uint32(len(b)), alloc)] }

// read serves READ(10), READ(12) and READ CD (user data only).
func (d *device) read(c *command, pio bool) result {
	cdb := c.cdb[:12]
	lba := uint64(binary.BigEndian.Uint32(cdb[2:]))
	var n uint64
	switch cdb[0] {
	case scsiRead10:
		n = uint64(binary.BigEndian.Uint16(cdb[7:]))
	case scsiRead12:
		n = uint64(binary.BigEndian.Uint32(cdb[6:]))
	case scsiReadCD:
		n = uint64(cdb[6])<<16 | uint64(cdb[7])<<8 | uint64(cdb[8])
		// Expected sector type any or Mode 1, and only the user data
		// field: 2048-byte blocks as the image holds them.
		if t := cdb[1] >> 2 & 7; t != 0 && t != 2 || cdb[9]&0xf8 != 0x10 && n != 0 {
			return d.checkCondition(illegal(ascInvalidField))
		}
	}
	if lba > d.sectors || n > d.sectors-lba {
		return d.checkCondition(illegal(ascLBAOutOfRange))
	}
	r := good()
	if n == 0 {
		return r
	}
	need := n * cdBlock
	bufs, got, err := c.buffers(need)
	if err != nil {
		return hostError()
	}
	if got < need {
		return abort()
	}
	if err := d.img.ReadV(bufs, lba*cdBlock); err != nil {
		return d.checkCondition(sense{key: 0x03, asc: 0x11}) // medium error, unrecovered read
	}
	r.n, r.pio = uint32(need), pio
	d.mu.Lock()
	d.sense = sense{}
	d.mu.Unlock()
	return r
}

// msf converts a block address to minutes/seconds/frames (2 s pregap).
func msf(lba uint64) [4]byte {
	l := lba + 150
	return [4]byte{0, byte(l / (60 * 75)), byte(l / 75 % 60), byte(l % 75)}
}

func addr(lba uint64, useMSF bool) [4]byte {
	if useMSF {
		return msf(lba)
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(lba))
	return b
}

// toc answers READ TOC/PMA/ATIP formats 0 (TOC), 1 (session info) and
// 2 (raw TOC) for a one-track data disc.
func (d *device) toc(cdb []byte) ([]byte, bool) {
	useMSF := cdb[1]&2 != 0
	format := cdb[2] & 0xf
	if format == 0 && cdb[9]>>6 != 0 {
		format = cdb[9] >> 6 // the older field in the control byte
	}
	alloc := uint32(binary.BigEndian.Uint16(cdb[7:]))
	track := cdb[6]
	var out []byte
	desc := func(ctrl, no byte, lba uint64) {
		a := addr(lba, useMSF)
		out = append(out, 0, ctrl, no, 0, a[0], a[1], a[2], a[3])
	}
	switch format {
	case 0:
		out = []byte{0, 0, 1, 1}
		switch {
		case track <= 1:
			desc(0x14, 1, 0)
			desc(0x14, 0xaa, d.sectors)
		case track == 0xaa:
			desc(0x14, 0xaa, d.sectors)
		default:
			return nil, false
		}
	case 1:
		out = []byte{0, 0, 1, 1}
		desc(0x14, 1, 0)
	case 2:
		out = []byte{0, 0, 1, 1}
		lo := msf(d.sectors)
		for _, e := range [][]byte{
			{1, 0x14, 0, 0xa0, 0, 0, 0, 0, 1, 0, 0},
			{1, 0x14, 0, 0xa1, 0, 0, 0, 0, 1, 0, 0},
			{1, 0x14, 0, 0xa2, 0, 0, 0, 0, lo[1], lo[2], lo[3]},
			{1, 0x14, 0, 1, 0, 0, 0, 0, 0, 2, 0},
		} {
			out = append(out, e...)
		}
	default:
		return nil, false
	}
	binary.BigEndian.PutUint16(out, uint16(len(out)-2))
	return limit(out, alloc), true
}

// profile is the current MMC profile: a CD up to 80 minutes, else a DVD.
func (d *device) profile() uint16 {
	if d.sectors <= cdMaxBlocks {
		return profileCDROM
	}
	return profileDVDROM
}

// configuration answers GET CONFIGURATION with the profile list, core and
// removable medium features.
func (d *device) configuration(cdb []byte) ([]byte, bool) {
	rt := cdb[1] & 3
	start := binary.BigEndian.Uint16(cdb[2:])
	alloc := uint32(binary.BigEndian.Uint16(cdb[7:]))
	if rt == 3 {
		return nil, false
	}
	cur := d.profile()
	profiles := []byte{0, profileDVDROM, 0, 0, 0, profileCDROM, 0, 0}
	if cur == profileDVDROM {
		profiles[2] = 1
	} else {
		profiles[6] = 1
	}
	features := []struct {
		code uint16
		body []byte
	}{
		{0x0000, profiles},
		{0x0001, []byte{0, 0, 0, 2, 0, 0, 0, 0}}, // core: ATAPI
		{0x0003, []byte{0x29, 0, 0, 0}},          // removable medium: tray, eject, lock
	}
	out := make([]byte, 8)
	binary.BigEndian.PutUint16(out[6:], cur)
	for _, f := range features {
		if f.code < start || rt == 2 && f.code != start {
			continue
		}
		// version 0 (1 for core), persistent, current.
		ver := byte(0)
		if f.code == 0x0001 {
			ver = 1
		}
		out = binary.BigEndian.AppendUint16(out, f.code)
		out = append(out, ver<<2|3, byte(len(f.body)))
		out = append(out, f.body...)
	}
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	return limit(out, alloc), true
}

// modeSense answers MODE SENSE(10) for the read error recovery (0x01) and
// capabilities (0x2a) pages, or all of them (0x3f).
func modeSense(cdb []byte) ([]byte, sense) {
	pc, page := cdb[2]>>6, cdb[2]&0x3f
	alloc := uint32(binary.BigEndian.Uint16(cdb[7:]))
	if pc == 3 {
		return nil, illegal(ascSavingNotSupported)
	}
	recovery := []byte{0x01, 0x06, 0, 5, 0, 0, 0, 0}
	caps := make([]byte, 22)
	caps[0], caps[1] = 0x2a, 20
	caps[2] = 0x3b                              // reads CD-R, CD-RW, method 2, DVD-ROM
	caps[4] = 0x71                              // audio play, mode 2 form 1/2, multi-session
	caps[5] = 0xff                              // CD-DA commands, accurate streaming
	caps[6] = 0x29                              // tray loading, eject, lock
	binary.BigEndian.PutUint16(caps[8:], 706*8) // max speed KB/s (obsolete)
	binary.BigEndian.PutUint16(caps[10:], 2)    // volume levels
	binary.BigEndian.PutUint16(caps[12:], 512)  // buffer KiB
	binary.BigEndian.PutUint16(caps[14:], 706*8)
	if pc == 1 {
		// Changeable values: nothing can be changed.
		clear(recovery[2:])
		clear(caps[2:])
	}
	out := make([]byte, 8) // header: medium type 0, no block descriptors
	switch page {
	case 0x01:
		out = append(out, recovery...)
	case 0x2a:
		out = append(out, caps...)
	case 0x3f:
		out = append(out, recovery...)
		out = append(out, caps...)
	default:
		return nil, illegal(ascInvalidField)
	}
	binary.BigEndian.PutUint16(out, uint16(len(out)-2))
	return limit(out, alloc), sense{}
}

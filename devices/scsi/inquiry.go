package scsi

import "encoding/binary"

// Standard INQUIRY identity: Hyper-V's virtual disk (Linux's storvsc
// keys SPC-3 conformance and WRITE SAME on the "Msft" vendor).
const (
	vendorID   = "Msft    "
	productID  = "Virtual Disk    "
	revisionID = "1.0 "
)

// VPD pages.
const (
	vpdSupported       = 0x00
	vpdSerial          = 0x80
	vpdIdentification  = 0x83
	vpdBlockLimits     = 0xb0
	vpdCharacteristics = 0xb1
	vpdProvisioning    = 0xb2
)

var vpdPages = []byte{vpdSupported, vpdSerial, vpdIdentification, vpdBlockLimits, vpdCharacteristics, vpdProvisioning}

func (d *Disk) inquiry(cdb []byte, buf Buffer) Result {
	alloc := int(binary.BigEndian.Uint16(cdb[3:]))
	if cdb[1]&0x02 != 0 { // CmdDt (obsolete)
		return illegal(ASCInvalidFieldCDB)
	}
	if cdb[1]&0x01 == 0 {
		if cdb[2] != 0 {
			return illegal(ASCInvalidFieldCDB)
		}
		return d.reply(d.standardInquiry(), alloc, buf)
	}
	page, ok := d.vpd(cdb[2])
	if !ok {
		return illegal(ASCInvalidFieldCDB)
	}
	return d.reply(page, alloc, buf)
}

func (d *Disk) standardInquiry() []byte {
	b := make([]byte, 36)
	b[0] = 0x00 // connected direct-access block device
	b[2] = 0x06 // SPC-4
	b[3] = 0x02 // response data format 2
	b[4] = byte(len(b) - 5)
	b[7] = 0x02 // CmdQue
	copy(b[8:], vendorID)
	copy(b[16:], productID)
	copy(b[32:], revisionID)
	return b
}

// vpd builds a VPD page.
func (d *Disk) vpd(code byte) ([]byte, bool) {
	var body []byte
	switch code {
	case vpdSupported:
		body = vpdPages
	case vpdSerial:
		body = []byte(d.serial)
	case vpdIdentification:
		// NAA (binary, LU association), then T10 vendor id (ASCII).
		naa := append([]byte{0x01, 0x03, 0x00, 0x08}, d.naa[:]...)
		t10 := append([]byte(vendorID), d.serial...)
		body = append(naa, append([]byte{0x02, 0x01, 0x00, byte(len(t10))}, t10...)...)
	case vpdBlockLimits:
		body = make([]byte, 0x3c)
		binary.BigEndian.PutUint32(body[4:], MaxTransfer/BlockSize) // maximum transfer length
		binary.BigEndian.PutUint32(body[8:], MaxTransfer/BlockSize) // optimal transfer length
		if d.img.CanPunchHoles() {
			binary.BigEndian.PutUint32(body[16:], maxUnmapBlocks)
			binary.BigEndian.PutUint32(body[20:], maxUnmapDescriptors)
			binary.BigEndian.PutUint32(body[24:], 8) // optimal unmap granularity: 4 KiB
			binary.BigEndian.PutUint64(body[32:], maxWriteSame)
		}
	case vpdCharacteristics:
		body = make([]byte, 0x3c)
		binary.BigEndian.PutUint16(body[0:], 1) // non-rotating medium
	case vpdProvisioning:
		body = make([]byte, 4)
		if d.img.CanPunchHoles() {
			// LBPU (UNMAP), LBPWS (WRITE SAME(16) with UNMAP), LBPWS10,
			// LBPRZ 1; thin provisioned.
			body[1] = 0x80 | 0x40 | 0x20 | 0x04
			body[2] = 0x02
		}
	default:
		return nil, false
	}
	page := make([]byte, 4+len(body))
	page[1] = code
	binary.BigEndian.PutUint16(page[2:], uint16(len(body)))
	copy(page[4:], body)
	return page, true
}

// Mode pages.
const (
	modePageCaching = 0x08
	modePageControl = 0x0a
	modePageAll     = 0x3f
	pcChangeable    = 1
	pcSaved         = 3
)

// modeSense answers MODE SENSE(6) and (10) with no block descriptors:
// the caching page (write cache enabled, so the guest sends SYNCHRONIZE
// CACHE to make data durable) and the control page; the header's WP bit
// says a read-only disk is write protected.
func (d *Disk) modeSense(cdb []byte, buf Buffer) Result {
	pc, code, sub := cdb[2]>>6, cdb[2]&0x3f, cdb[3]
	if pc == pcSaved {
		return illegal(ASCSavingUnsupported)
	}
	if sub != 0 && sub != 0xff {
		return illegal(ASCInvalidFieldCDB)
	}
	caching := make([]byte, 20)
	caching[0], caching[1] = modePageCaching, byte(len(caching)-2)
	control := make([]byte, 12)
	control[0], control[1] = modePageControl, byte(len(control)-2)
	if pc != pcChangeable {
		caching[2] = 0x04 // WCE
	}
	var pages []byte
	switch code {
	case modePageCaching:
		pages = caching
	case modePageControl:
		pages = control
	case modePageAll:
		pages = append(caching, control...)
	default:
		return illegal(ASCInvalidFieldCDB)
	}
	var devSpecific byte = 0x10 // DPOFUA
	if d.img.ReadOnly() {
		devSpecific |= 0x80 // WP
	}
	if cdb[0] == OpModeSense6 {
		h := []byte{byte(3 + len(pages)), 0, devSpecific, 0}
		return d.reply(append(h, pages...), int(cdb[4]), buf)
	}
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h[0:], uint16(6+len(pages)))
	h[3] = devSpecific
	return d.reply(append(h, pages...), int(binary.BigEndian.Uint16(cdb[7:])), buf)
}

// NotPresent answers a command for a LUN that does not exist, for
// adapters that answer INQUIRY there (as Hyper-V does): standard INQUIRY
// data with peripheral qualifier 3 (no logical unit here), so a scan moves
// on quietly; ok is false for every other command (the adapter's own
// "invalid LUN" status applies).
func NotPresent(cdb []byte, buf Buffer) (r Result, ok bool) {
	if len(cdb) < 6 || cdb[0] != OpInquiry {
		return Result{}, false
	}
	if cdb[1]&0x03 != 0 || cdb[2] != 0 {
		return illegal(ASCInvalidFieldCDB), true
	}
	b := make([]byte, 36)
	b[0] = 0x7f // qualifier 3, type 0x1f: not present
	b[2], b[3], b[4] = 0x06, 0x02, byte(len(b)-5)
	alloc := int(binary.BigEndian.Uint16(cdb[3:]))
	if alloc < len(b) {
		b = b[:alloc]
	}
	return good(buf.copyIn(b)), true
}

// Target is a SCSI target: its LUNs, numbered from 0.
type Target struct {
	LUNs []*Disk
}

// Lookup returns LUN lun (nil: no such LUN).
func (t *Target) Lookup(lun int) *Disk {
	if t == nil || lun < 0 || lun >= len(t.LUNs) {
		return nil
	}
	return t.LUNs[lun]
}

// ReportLUNs answers REPORT LUNS (any LUN may be addressed, present or
// not): the LUN inventory in single-level peripheral addressing. A nil
// Target (an address with no target) reports an empty list.
func (t *Target) ReportLUNs(cdb []byte, buf Buffer) Result {
	if len(cdb) < 12 {
		return illegal(ASCInvalidFieldCDB)
	}
	if cdb[2] > 2 { // SELECT REPORT: 0 all, 1 well-known, 2 all of both
		return illegal(ASCInvalidFieldCDB)
	}
	alloc := int(binary.BigEndian.Uint32(cdb[6:]))
	if alloc < 16 {
		return illegal(ASCInvalidFieldCDB)
	}
	n := 0
	if t != nil && cdb[2] != 1 {
		n = len(t.LUNs)
	}
	b := make([]byte, 8+8*n)
	binary.BigEndian.PutUint32(b[0:], uint32(8*n))
	for i := range n {
		b[8+8*i] = byte(i>>8) & 0x3f
		b[8+8*i+1] = byte(i)
	}
	if alloc < len(b) {
		b = b[:alloc]
	}
	return good(buf.copyIn(b))
}

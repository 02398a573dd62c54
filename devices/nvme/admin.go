package nvme

import (
	"encoding/binary"
	"unsafe"
)

// Admin command opcodes (NVMe 1.4 §5).
const (
	adminDeleteSQ     = 0x00
	adminCreateSQ     = 0x01
	adminGetLogPage   = 0x02
	adminDeleteCQ     = 0x04
	adminCreateCQ     = 0x05
	adminIdentify     = 0x06
	adminAbort        = 0x08
	adminSetFeatures  = 0x09
	adminGetFeatures  = 0x0a
	adminAsyncEvent   = 0x0c
	adminDoorbellBufC = 0x7c
)

// Feature identifiers (NVMe 1.4 §5.21.1).
const (
	featArbitration    = 0x01
	featPower          = 0x02
	featTempThreshold  = 0x04
	featErrorRecovery  = 0x05
	featWriteCache     = 0x06
	featNumQueues      = 0x07
	featIRQCoalescing  = 0x08
	featIRQVector      = 0x09
	featWriteAtomicity = 0x0a
	featAsyncEvent     = 0x0b
	featSWProgress     = 0x80
)

// Temperatures in kelvins: the composite temperature the SMART log reports
// and the default over-temperature threshold.
const (
	tempNow      = 313
	tempWarning  = 343
	tempCritical = 353
)

// features are the Set Features values that last until a reset.
type features struct {
	arbitration, power, errRecovery, coalescing uint32
	atomicity, asyncEvent, swProgress           uint32
	tempOver, tempUnder                         uint32
}

func defaultFeatures() features {
	return features{tempOver: tempWarning}
}

// admin executes one admin command with the controller lock held. A
// command from a queue a reset detached is dropped unexecuted.
func (c *Controller) admin(sq *subQueue, cmd *command) completion {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sq.detached() {
		return completion{hold: true}
	}
	if cmd.fuse != 0 || cmd.psdt != 0 {
		return fail(scInvalidField)
	}
	switch cmd.opc {
	case adminIdentify:
		return c.identify(cmd)
	case adminGetFeatures:
		return c.getFeatures(cmd)
	case adminSetFeatures:
		return c.setFeatures(cmd)
	case adminCreateCQ:
		return c.createCQ(cmd)
	case adminCreateSQ:
		return c.createSQ(cmd)
	case adminDeleteSQ:
		return c.deleteSQ(cmd)
	case adminDeleteCQ:
		return c.deleteCQ(cmd)
	case adminGetLogPage:
		return c.getLogPage(cmd)
	case adminAsyncEvent:
		// Held until an event happens; vmm raises none, so until a reset.
		if len(c.aers) >= aerLimit {
			return fail(scAERLimit)
		}
		c.aers = append(c.aers, cmd.cid)
		return completion{hold: true}
	case adminAbort:
		// Commands run to completion in order; nothing is ever abortable
		// (DW0 bit 0: not aborted).
		return completion{dw0: 1}
	case adminDoorbellBufC:
		return c.doorbellBufferConfig(cmd)
	}
	return fail(scInvalidOpcode)
}

// toGuest copies data to the command's PRPs (n bytes of transfer).
func (c *Controller) toGuest(cmd *command, data []byte) completion {
	bufs, sc := prpBuffers(c.mem, cmd.prp1, cmd.prp2, uint64(len(data)))
	if sc != scSuccess {
		return fail(sc)
	}
	copyTo(bufs, data)
	return completion{}
}

// queueRange reports whether a new queue at [gpa, gpa+n) overlaps one that
// exists: two queues on the same memory would have the controller read its
// own completions as commands.
func (c *Controller) queueOverlaps(gpa, n uint64) bool {
	over := func(g, m uint64) bool { return gpa < g+m && g < gpa+n }
	for i := range c.sqs {
		if q := c.sqs[i].Load(); q != nil && over(q.gpa, uint64(q.size)*sqeSize) {
			return true
		}
		if q := c.cqs[i].Load(); q != nil && over(q.gpa, uint64(q.size)*cqeSize) {
			return true
		}
	}
	return false
}

// checkNewQueue validates the fields common to both create commands.
func (c *Controller) checkNewQueue(cmd *command, entry uint64, esShift int, es uint32) (qid uint16, size int, sc uint16) {
	qid = uint16(cmd.cdw10)
	size = int(cmd.cdw10>>16) + 1
	switch {
	case qid == 0 || int(qid) > c.nqueue:
		return 0, 0, scInvalidQID
	case size < 2 || size > MaxQueueEntries:
		return 0, 0, scInvalidQSize
	case cmd.cdw11&1 == 0: // PC: CAP.CQR asks for contiguous queues
		return 0, 0, scInvalidField
	case (c.cc>>esShift)&0xf != es: // CC.IOSQES / IOCQES: the entry sizes offered
		return 0, 0, scInvalidField
	case cmd.prp1 == 0 || cmd.prp1%pageSize != 0:
		return 0, 0, scPRPOffset
	case c.queueOverlaps(cmd.prp1, uint64(size)*entry):
		return 0, 0, scInvalidField
	}
	return qid, size, scSuccess
}

func (c *Controller) createCQ(cmd *command) completion {
	qid, size, sc := c.checkNewQueue(cmd, cqeSize, ccCQEShift, 4)
	if sc != scSuccess {
		return fail(sc)
	}
	if c.cqs[qid].Load() != nil {
		return fail(scInvalidQID)
	}
	ien := cmd.cdw11&2 != 0
	vector := int(cmd.cdw11 >> 16)
	if vector >= c.msix.Vectors() {
		return fail(scInvalidVector)
	}
	cq, err := c.newCQ(qid, cmd.prp1, size, vector, ien)
	if err != nil {
		return fail(scInvalidField)
	}
	if c.dbbuf != nil {
		cq.shadow.Store(c.shadowFor(2*int(qid)+1, 0))
	}
	c.cqs[qid].Store(cq)
	return completion{}
}

func (c *Controller) createSQ(cmd *command) completion {
	qid, size, sc := c.checkNewQueue(cmd, sqeSize, ccSQEShift, 6)
	if sc != scSuccess {
		return fail(sc)
	}
	if c.sqs[qid].Load() != nil {
		return fail(scInvalidQID)
	}
	cqid := uint16(cmd.cdw11 >> 16)
	if cqid == 0 || int(cqid) > c.nqueue || c.cqs[cqid].Load() == nil {
		return fail(scInvalidCQ)
	}
	sq, err := c.newSQ(qid, cmd.prp1, size, c.cqs[cqid].Load())
	if err != nil {
		return fail(scInvalidField)
	}
	if c.dbbuf != nil {
		sq.shadow.Store(c.shadowFor(2*int(qid), 0))
	}
	c.sqs[qid].Store(sq)
	sq.start(c.io, true)
	return completion{}
}

func (c *Controller) deleteSQ(cmd *command) completion {
	qid := uint16(cmd.cdw10)
	if qid == 0 || int(qid) > c.nqueue || c.sqs[qid].Load() == nil {
		return fail(scInvalidQID)
	}
	sq := c.sqs[qid].Swap(nil)
	// The queue's goroutine never takes the controller lock: waiting for
	// it here cannot deadlock.
	sq.stop()
	return completion{}
}

func (c *Controller) deleteCQ(cmd *command) completion {
	qid := uint16(cmd.cdw10)
	if qid == 0 || int(qid) > c.nqueue || c.cqs[qid].Load() == nil {
		return fail(scInvalidQID)
	}
	cq := c.cqs[qid].Load()
	if cq.users.Load() != 0 {
		return fail(scInvalidQDeletion)
	}
	c.cqs[qid].Store(nil)
	return completion{}
}

// shadowFor returns doorbell i's shadow slot after writing v there, the
// value the controller already has, so a queue that existed before the
// buffer was configured keeps its position.
func (c *Controller) shadowFor(i int, v uint32) *shadowSlot {
	s := c.dbbuf.slotAt(i)
	*s.db = v
	return s
}

// doorbellBufferConfig (NVMe 1.4 §5.7) sets the shadow doorbell and event
// index buffers, one page each. The admin queue is not shadowed (Linux
// never writes its shadow); every I/O queue, existing or future, is.
func (c *Controller) doorbellBufferConfig(cmd *command) completion {
	n := uint64(len(c.sqs)) * 8
	if cmd.prp1%pageSize != 0 || cmd.prp2%pageSize != 0 || cmd.prp1 == 0 || cmd.prp2 == 0 {
		return fail(scInvalidField)
	}
	shadow, err := c.mem.Slice(cmd.prp1, n)
	if err != nil {
		return fail(scInvalidField)
	}
	ei, err := c.mem.Slice(cmd.prp2, n)
	if err != nil {
		return fail(scInvalidField)
	}
	// Both buffers are read and written as aligned dwords.
	if uintptr(unsafe.Pointer(&shadow[0]))%4 != 0 || uintptr(unsafe.Pointer(&ei[0]))%4 != 0 {
		return fail(scInvalidField)
	}
	c.dbbuf = &dbbuf{shadow: shadow, ei: ei}
	for qid := 1; qid < len(c.sqs); qid++ {
		if sq := c.sqs[qid].Load(); sq != nil {
			sq.shadow.Store(c.shadowFor(2*qid, sq.tail.Load()))
			sq.kick()
		}
		if cq := c.cqs[qid].Load(); cq != nil {
			cq.shadow.Store(c.shadowFor(2*qid+1, cq.head.Load()))
		}
	}
	c.rearmEventsLocked()
	return completion{}
}

// Identify CNS values.
const (
	cnsNamespace     = 0x00
	cnsController    = 0x01
	cnsActiveNSList  = 0x02
	cnsNSDescriptors = 0x03
)

// nsid is the one namespace's ID.
const nsid = 1

func (c *Controller) identify(cmd *command) completion {
	buf := make([]byte, 4096)
	switch cmd.cdw10 & 0xff {
	case cnsController:
		c.identifyController(buf)
	case cnsNamespace:
		if cmd.nsid != nsid {
			return fail(scInvalidNamespace)
		}
		c.identifyNamespace(buf)
	case cnsActiveNSList:
		if cmd.nsid >= 0xfffffffe {
			return fail(scInvalidNamespace)
		}
		if cmd.nsid < nsid {
			binary.LittleEndian.PutUint32(buf, nsid)
		}
	case cnsNSDescriptors:
		if cmd.nsid != nsid {
			return fail(scInvalidNamespace)
		}
		// No identifiers: the list is empty.
	default:
		return fail(scInvalidField)
	}
	return c.toGuest(cmd, buf)
}

// putString writes s space-padded into b (the ASCII fields of Identify).
func putString(b []byte, s string) {
	for i := range b {
		b[i] = ' '
	}
	copy(b, s)
}

// Firmware revision and model reported by Identify.
const (
	firmwareRev = "1.0"
	modelName   = "vmm NVMe"
)

func (c *Controller) identifyController(b []byte) {
	le := binary.LittleEndian
	le.PutUint16(b[0:], VendorID)
	le.PutUint16(b[2:], 0x1af4) // SSVID
	putString(b[4:24], c.serial)
	putString(b[24:64], modelName)
	putString(b[64:72], firmwareRev)
	b[72] = 6    // RAB
	b[77] = mdts // MDTS
	le.PutUint32(b[80:], Version)
	b[111] = 1                  // CNTRLTYPE: I/O controller
	le.PutUint16(b[256:], 1<<8) // OACS: Doorbell Buffer Config
	b[258] = 3                  // ACL (0's based)
	b[259] = aerLimit - 1       // AERL
	b[260] = 1<<1 | 1           // FRMW: one slot, read-only
	b[263] = 0                  // NPSS: one power state
	le.PutUint16(b[266:], tempWarning)
	le.PutUint16(b[268:], tempCritical)
	b[512] = 6<<4 | 6                // SQES
	b[513] = 4<<4 | 4                // CQES
	le.PutUint32(b[516:], 1)         // NN
	le.PutUint16(b[520:], 1<<2|1<<3) // ONCS: dataset management, write zeroes
	b[525] = 1                       // VWC present
	copy(b[768:1024], "nqn.2026-01.dev.vmm:nvme:"+c.serial)
	le.PutUint16(b[2048:], 2500) // PSD0 MP: 25 W
}

func (c *Controller) identifyNamespace(b []byte) {
	le := binary.LittleEndian
	blocks := c.img.Size() / BlockSize
	le.PutUint64(b[0:], blocks)  // NSZE
	le.PutUint64(b[8:], blocks)  // NCAP
	le.PutUint64(b[16:], blocks) // NUSE
	b[25] = 0                    // NLBAF: one format
	b[26] = 0                    // FLBAS: format 0
	// DLFEAT: write zeroes may deallocate; what a deallocated block reads
	// is not promised (a filesystem without hole punching keeps the data).
	b[33] = 1 << 3
	if c.img.ReadOnly() {
		// NSATTR: write protected, so the driver marks the disk
		// read-only rather than learning it from failed writes.
		b[99] = 1
	}
	le.PutUint32(b[128:], 9<<16) // LBAF0: 512-byte blocks, no metadata
}

func (c *Controller) featureValue(fid uint32, f *features, cdw11 uint32) (uint32, bool) {
	switch fid {
	case featArbitration:
		return f.arbitration, true
	case featPower:
		return f.power, true
	case featTempThreshold:
		if (cdw11>>16)&0xf != 0 { // TMPSEL: only the composite temperature
			return 0, false
		}
		if (cdw11>>20)&3 == 1 {
			return f.tempUnder, true
		}
		return f.tempOver, true
	case featErrorRecovery:
		return f.errRecovery, true
	case featWriteCache:
		if c.wce.Load() {
			return 1, true
		}
		return 0, true
	case featNumQueues:
		n := uint32(c.nqueue - 1)
		return n<<16 | n, true
	case featIRQCoalescing:
		return f.coalescing, true
	case featIRQVector:
		iv := cdw11 & 0xffff
		if int(iv) >= c.msix.Vectors() {
			return 0, false
		}
		return iv, true
	case featWriteAtomicity:
		return f.atomicity, true
	case featAsyncEvent:
		return f.asyncEvent, true
	case featSWProgress:
		return f.swProgress, true
	}
	return 0, false
}

func (c *Controller) getFeatures(cmd *command) completion {
	fid := cmd.cdw10 & 0xff
	sel := (cmd.cdw10 >> 8) & 7
	f := &c.feat
	if sel == 1 || sel == 2 { // default; saved is the default (nothing is saveable)
		d := defaultFeatures()
		f = &d
	}
	v, ok := c.featureValue(fid, f, cmd.cdw11)
	if !ok {
		return fail(scInvalidField)
	}
	switch sel {
	case 0, 1, 2:
		if (sel == 1 || sel == 2) && fid == featWriteCache {
			v = 1
		}
		return completion{dw0: v}
	case 3: // supported capabilities: changeable, not saveable
		return completion{dw0: 1 << 2}
	}
	return fail(scInvalidField)
}

func (c *Controller) setFeatures(cmd *command) completion {
	fid := cmd.cdw10 & 0xff
	if cmd.cdw10&(1<<31) != 0 {
		return fail(scNotSaveable)
	}
	v := cmd.cdw11
	f := &c.feat
	switch fid {
	case featArbitration:
		f.arbitration = v
	case featPower:
		if v&0x1f != 0 { // only power state 0 exists
			return fail(scInvalidField)
		}
		f.power = v & 0xff
	case featTempThreshold:
		if (v>>16)&0xf != 0 && (v>>16)&0xf != 0xf || (v>>20)&3 > 1 {
			return fail(scInvalidField)
		}
		if (v>>20)&3 == 1 {
			f.tempUnder = v & 0xffff
		} else {
			f.tempOver = v & 0xffff
		}
	case featErrorRecovery:
		f.errRecovery = v & 0x1ffff
	case featWriteCache:
		c.wce.Store(v&1 != 0)
	case featNumQueues:
		if v&0xffff == 0xffff || v>>16 == 0xffff {
			return fail(scInvalidField)
		}
		n := uint32(c.nqueue - 1)
		return completion{dw0: n<<16 | n}
	case featIRQCoalescing:
		f.coalescing = v & 0xffff
	case featIRQVector:
		if int(v&0xffff) >= c.msix.Vectors() {
			return fail(scInvalidField)
		}
	case featWriteAtomicity:
		f.atomicity = v & 1
	case featAsyncEvent:
		f.asyncEvent = v
	case featSWProgress:
		f.swProgress = v & 0xff
	default:
		return fail(scInvalidField)
	}
	return completion{}
}

// Log page identifiers.
const (
	logError    = 0x01
	logSMART    = 0x02
	logFirmware = 0x03
)

func (c *Controller) getLogPage(cmd *command) completion {
	lid := cmd.cdw10 & 0xff
	numd := uint64(cmd.cdw10>>16|(cmd.cdw11&0xffff)<<16) + 1
	off := uint64(cmd.cdw12) | uint64(cmd.cdw13)<<32
	if numd*4 > maxTransfer || off&3 != 0 {
		return fail(scInvalidField)
	}
	var page []byte
	switch lid {
	case logError:
		page = make([]byte, 64) // one entry (ELPE 0), no error recorded
	case logSMART:
		page = c.smartLog()
	case logFirmware:
		page = make([]byte, 512)
		page[0] = 1 // AFI: slot 1 active
		putString(page[8:16], firmwareRev)
	default:
		return fail(scInvalidLogPage)
	}
	if off > uint64(len(page)) {
		return fail(scInvalidField)
	}
	out := make([]byte, numd*4)
	copy(out, page[off:])
	return c.toGuest(cmd, out)
}

// smartLog is the SMART / Health Information page: a healthy, cool disk
// with the controller's command and data counters.
func (c *Controller) smartLog() []byte {
	b := make([]byte, 512)
	le := binary.LittleEndian
	le.PutUint16(b[1:], tempNow)
	b[3] = 100 // available spare
	b[4] = 10  // spare threshold
	// Data units are thousands of 512-byte units, rounded up.
	le.PutUint64(b[32:], (c.stats.blocksRead.Load()+999)/1000)
	le.PutUint64(b[48:], (c.stats.blocksWrt.Load()+999)/1000)
	le.PutUint64(b[64:], c.stats.reads.Load())
	le.PutUint64(b[80:], c.stats.writes.Load())
	return b
}

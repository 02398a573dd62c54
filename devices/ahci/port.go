package ahci

import (
	"encoding/binary"
	"sync"
)

// Port registers, from the port's base.
const (
	pxCLB    = 0x00
	pxCLBU   = 0x04
	pxFB     = 0x08
	pxFBU    = 0x0c
	pxIS     = 0x10
	pxIE     = 0x14
	pxCMD    = 0x18
	pxTFD    = 0x20
	pxSIG    = 0x24
	pxSSTS   = 0x28
	pxSCTL   = 0x2c
	pxSERR   = 0x30
	pxSACT   = 0x34
	pxCI     = 0x38
	pxSNTF   = 0x3c
	pxFBS    = 0x40
	pxDEVSLP = 0x44
)

// PxIS bits.
const (
	isDHRS = 1 << 0
	isPSS  = 1 << 1
	isSDBS = 1 << 3
	isOFS  = 1 << 24
	isHBDS = 1 << 28
	isHBFS = 1 << 29
	isTFES = 1 << 30
	// ieMask is the PxIE bits that exist.
	ieMask = 0xfdc000ff
)

// PxCMD bits.
const (
	cmdST    = 1 << 0
	cmdSUD   = 1 << 1
	cmdPOD   = 1 << 2
	cmdCLO   = 1 << 3
	cmdFRE   = 1 << 4
	cmdFR    = 1 << 14
	cmdCR    = 1 << 15
	cmdATAPI = 1 << 24
	cmdDLAE  = 1 << 25
	// cmdWritable are the bits software sets and reads back.
	cmdWritable = cmdST | cmdSUD | cmdPOD | cmdFRE | cmdATAPI | cmdDLAE
)

// Signatures (PxSIG) and link status.
const (
	sigDisk  = 0x00000101
	sigATAPI = 0xeb140101
	sigNone  = 0xffffffff
	// sstsUp is device present, communication established, Gen1, active.
	sstsUp = 0x113
)

// Task file status bits.
const (
	statBSY  = 0x80
	statDRDY = 0x40
	statDSC  = 0x10
	statDRQ  = 0x08
	statERR  = 0x01
	statOK   = statDRDY | statDSC
	errABRT  = 0x04
	errIDNF  = 0x10
	errUNC   = 0x40
	// errWP is a write to write-protected media (ATA/ATAPI-7's Removable
	// Media Status Notification; the bit UNC has on reads). libata counts
	// it a media error and fails the write without retries, where ABRT
	// would be retried five times.
	errWP = 0x40
)

// Received-FIS area offsets and FIS types.
const (
	rfisPIO    = 0x20
	rfisD2H    = 0x40
	rfisSDB    = 0x58
	fisH2D     = 0x27
	fisD2H     = 0x34
	fisPIOSet  = 0x5f
	fisSDB     = 0xa1
	fisI       = 0x40
	maxNCQTags = 32
)

// port is one port: its registers (under the HBA's lock) and the goroutine
// that runs its command list.
type port struct {
	h   *HBA
	n   int
	dev *device // nil for an empty port

	kick      *kicker
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	ncq       chan struct{} // one token per NCQ command in flight
	ncqWG     sync.WaitGroup

	// Registers, under h.mu.
	clb, fb               uint64
	is, ie, cmd, tfd, sig uint32
	ssts, sctl, serr      uint32
	sact, ci              uint32
	busy                  uint32 // CI slots the goroutine took and has not finished
	// active counts commands taken from CI whose execution has not
	// returned, stale ones included: PxCMD.CR stays set until it is 0,
	// so a driver that clears ST and waits for CR (AHCI 10.1.2) knows
	// that no command of the port writes its memory any more.
	active   int
	halted   bool   // a task file error: nothing runs until ST goes 1 -> 0
	gen      uint64 // bumped whenever the port stops: later completions are stale
	lastSlot uint32
}

func newPort(h *HBA, n int, d *device) (*port, error) {
	k, err := newKicker()
	if err != nil {
		return nil, err
	}
	return &port{h: h, n: n, dev: d, kick: k, quit: make(chan struct{}),
		done: make(chan struct{}), ncq: make(chan struct{}, maxNCQTags)}, nil
}

// kickLocked has unlock wake the port's goroutine.
func (p *port) kickLocked() { p.h.kicks |= 1 << p.n }

func (p *port) wake() { p.kick.kick() }

func (p *port) close() {
	p.closeOnce.Do(func() {
		close(p.quit)
		p.kick.close()
	})
	<-p.done
	p.ncqWG.Wait()
}

// stopLocked is what clearing PxCMD.ST does: the command list and the
// NCQ tags are dropped, and anything still running is stale.
func (p *port) stopLocked() {
	p.gen++
	p.ci, p.sact, p.busy = 0, 0, 0
	p.halted = false
}

// resetLocked brings the port to its power-on state with the link up.
func (p *port) resetLocked() {
	p.stopLocked()
	p.is, p.serr = 0, 0
	p.linkUpLocked()
}

// linkUpLocked ends a COMRESET: the device sends its signature FIS.
func (p *port) linkUpLocked() {
	if p.dev == nil {
		p.ssts, p.sig, p.tfd = 0, sigNone, 0x7f
		return
	}
	p.ssts = sstsUp
	p.sig = sigDisk
	if p.dev.atapi {
		p.sig = sigATAPI
	}
	p.tfd = statOK
	p.dev.reset()
	r := result{status: statOK, sig: true}
	p.postD2HLocked(p.dev.signatureRegs(r), false)
}

func (p *port) readReg(reg uint64) uint32 {
	switch reg {
	case pxCLB:
		return uint32(p.clb)
	case pxCLBU:
		return uint32(p.clb >> 32)
	case pxFB:
		return uint32(p.fb)
	case pxFBU:
		return uint32(p.fb >> 32)
	case pxIS:
		return p.is
	case pxIE:
		return p.ie
	case pxCMD:
		v := p.cmd
		if v&cmdST != 0 || p.active > 0 {
			v |= cmdCR
		}
		if v&cmdFRE != 0 {
			v |= cmdFR
		}
		return v | (p.lastSlot&31)<<8
	case pxTFD:
		return p.tfd
	case pxSIG:
		return p.sig
	case pxSSTS:
		return p.ssts
	case pxSCTL:
		return p.sctl
	case pxSERR:
		return p.serr
	case pxSACT:
		return p.sact
	case pxCI:
		return p.ci
	}
	// SNTF, FBS, DEVSLP and vendor registers: not implemented, 0.
	return 0
}

func (p *port) writeReg(reg uint64, v uint32) {
	switch reg {
	case pxCLB:
		p.clb = p.clb&^0xffffffff | uint64(v&^0x3ff)
	case pxCLBU:
		p.clb = p.clb&0xffffffff | uint64(v)<<32
	case pxFB:
		p.fb = p.fb&^0xffffffff | uint64(v&^0xff)
	case pxFBU:
		p.fb = p.fb&0xffffffff | uint64(v)<<32
	case pxIS:
		p.is &^= v
		p.h.interruptLocked()
	case pxIE:
		p.ie = v & ieMask
		p.h.interruptLocked()
	case pxCMD:
		p.writeCMDLocked(v)
	case pxSCTL:
		p.writeSCTLLocked(v)
	case pxSERR:
		p.serr &^= v
	case pxSACT:
		if p.cmd&cmdST != 0 {
			p.sact |= v
		}
	case pxCI:
		if p.cmd&cmdST != 0 {
			p.ci |= v
			p.kickLocked()
		}
	}
}

func (p *port) writeCMDLocked(v uint32) {
	old := p.cmd
	p.cmd = old&^cmdWritable | v&cmdWritable
	if v&cmdCLO != 0 {
		// Command list override: clear BSY and DRQ so that a reset FIS
		// can be sent to a device that hangs.
		p.tfd &^= statBSY | statDRQ
	}
	switch {
	case old&cmdST != 0 && p.cmd&cmdST == 0:
		p.stopLocked()
	case old&cmdST == 0 && p.cmd&cmdST != 0:
		p.lastSlot = 0
		p.kickLocked()
	}
}

// writeSCTLLocked acts on DET: 1 starts a COMRESET (the link goes down,
// commands in flight are dropped), 0 after it brings the link back with a
// fresh signature, 4 takes the port offline.
func (p *port) writeSCTLLocked(v uint32) {
	old := p.sctl & 0xf
	p.sctl = v & 0xfff
	switch det := v & 0xf; {
	case det == 1:
		p.ci, p.sact, p.busy = 0, 0, 0
		p.gen++
		p.halted = false
		p.ssts, p.tfd = 0, statBSY
		if p.dev != nil {
			p.ssts = 1 // device detected, no communication yet
		}
	case det == 4:
		p.ssts = 4
	case det == 0 && old != 0:
		p.linkUpLocked()
	}
}

// run serves the command list until the HBA closes.
func (p *port) run() {
	defer close(p.done)
	for p.kick.wait() {
		for {
			select {
			case <-p.quit:
				return
			default:
			}
			slot, gen, ok := p.next()
			if !ok {
				break
			}
			p.execute(slot, gen)
		}
	}
}

// next takes the next issued slot, if the port is running.
func (p *port) next() (int, uint64, bool) {
	p.h.mu.Lock()
	defer p.h.unlock()
	if p.cmd&cmdST == 0 || p.halted {
		return 0, 0, false
	}
	pending := p.ci &^ p.busy
	if pending == 0 {
		return 0, 0, false
	}
	// Round robin from the slot after the last one, as CCS describes.
	for i := range uint32(numSlots) {
		s := (p.lastSlot + 1 + i) % numSlots
		if pending&(1<<s) != 0 {
			p.busy |= 1 << s
			p.active++
			p.lastSlot = s
			return int(s), p.gen, true
		}
	}
	return 0, 0, false
}

// cmdHeader is one command list entry.
type cmdHeader struct {
	cfl   int // command FIS length in dwords
	atapi bool
	write bool
	prdtl int
	ctba  uint64
}

func parseHeader(b []byte) cmdHeader {
	dw0 := binary.LittleEndian.Uint32(b)
	return cmdHeader{cfl: int(dw0 & 0x1f), atapi: dw0&(1<<5) != 0, write: dw0&(1<<6) != 0,
		prdtl: int(dw0 >> 16), ctba: binary.LittleEndian.Uint64(b[8:]) &^ 0x7f}
}

// execute runs one command slot and completes it.
func (p *port) execute(slot int, gen uint64) {
	p.h.mu.Lock()
	clb := p.clb
	p.h.unlock()
	hb, err := p.h.mem.Slice(clb+uint64(slot)*hdrSize, hdrSize)
	if err != nil {
		p.complete(slot, gen, result{status: statOK | statERR, errReg: errABRT, hostErr: isHBFS})
		return
	}
	hdr := parseHeader(hb)
	table, err := p.h.mem.Slice(hdr.ctba, prdtOffset+uint64(hdr.prdtl)*prdEntrySize)
	if err != nil {
		p.complete(slot, gen, result{status: statOK | statERR, errReg: errABRT, hostErr: isHBFS})
		return
	}
	c := &command{mem: p.h.mem, hdr: hdr, prdt: table[prdtOffset:]}
	copy(c.cfis[:], table[:fisMax])
	copy(c.cdb[:], table[cdbOffset:cdbOffset+16])
	c.f = parseH2D(c.cfis[:])
	if c.cfis[0] != fisH2D {
		// Not a command FIS: nothing a device could act on.
		p.complete(slot, gen, result{status: statOK | statERR, errReg: errABRT, hostErr: isHBFS})
		return
	}
	if c.cfis[1]&0x80 == 0 {
		p.complete(slot, gen, p.control(c))
		return
	}
	if p.dev == nil {
		p.complete(slot, gen, abort())
		return
	}
	if isNCQ(c.f.cmd) && !p.dev.atapi {
		p.startNCQ(slot, gen, c)
		return
	}
	p.complete(slot, gen, p.dev.execute(c))
}

// control handles a FIS with C = 0: the device control register. Setting
// SRST starts a software reset (no answer); clearing it ends the reset
// and the device answers with its signature.
func (p *port) control(c *command) result {
	if c.f.ctl&0x04 != 0 || p.dev == nil {
		return result{status: statOK, noFIS: true}
	}
	p.dev.reset()
	return p.dev.signatureRegs(result{status: statOK, sig: true})
}

// complete finishes a non-queued command: PRDBC, the FISes, the task file,
// the interrupt status, and CI, unless the port was stopped meanwhile.
func (p *port) complete(slot int, gen uint64, r result) {
	p.h.mu.Lock()
	defer p.h.unlock()
	p.active--
	if gen != p.gen {
		return
	}
	p.busy &^= 1 << slot
	if hb, err := p.h.mem.Slice(p.clb+uint64(slot)*hdrSize, hdrSize); err == nil {
		binary.LittleEndian.PutUint32(hb[4:], r.n)
	}
	if r.noFIS {
		p.ci &^= 1 << slot
		return
	}
	if r.pio && r.status&statERR == 0 {
		p.postPIOLocked(r)
	}
	p.postD2HLocked(r, true)
	p.tfd = uint32(r.errReg)<<8 | uint32(r.status)
	p.is |= r.hostErr
	if r.status&statERR != 0 || r.hostErr != 0 {
		// AHCI 6.2.2: the slot stays issued and the port stops until
		// software clears ST (Linux, OVMF and SeaBIOS all do).
		p.is |= isTFES
		p.halted = true
	} else {
		p.ci &^= 1 << slot
	}
	p.h.interruptLocked()
}

// fis returns the received-FIS area's bytes at off, or nil when FIS
// receive is off or the area is not in RAM.
func (p *port) fisLocked(off, n uint64) []byte {
	if p.cmd&cmdFRE == 0 {
		return nil
	}
	b, err := p.h.mem.Slice(p.fb+off, n)
	if err != nil {
		return nil
	}
	return b
}

func putRegs(b []byte, r result) {
	b[4], b[5], b[6] = byte(r.lba), byte(r.lba>>8), byte(r.lba>>16)
	b[7] = r.device
	b[8], b[9], b[10] = byte(r.lba>>24), byte(r.lba>>32), byte(r.lba>>40)
	b[12], b[13] = byte(r.count), byte(r.count>>8)
}

// postD2HLocked writes a D2H Register FIS; irq sets its I bit and PxIS.DHRS.
func (p *port) postD2HLocked(r result, irq bool) {
	if b := p.fisLocked(rfisD2H, 20); b != nil {
		clear(b)
		b[0] = fisD2H
		if irq {
			b[1] = fisI
		}
		b[2], b[3] = r.status, r.errReg
		putRegs(b, r)
	}
	if irq {
		p.is |= isDHRS
	}
}

// postPIOLocked writes the PIO Setup FIS of a PIO data-in command: status
// with DRQ as the data phase begins (never BSY: SeaBIOS reads this byte),
// the ending status, and the byte count.
func (p *port) postPIOLocked(r result) {
	if b := p.fisLocked(rfisPIO, 20); b != nil {
		clear(b)
		b[0] = fisPIOSet
		b[1] = 0x20 | fisI // data to the host
		b[2] = statOK | statDRQ
		putRegs(b, r)
		b[15] = r.status
		binary.LittleEndian.PutUint16(b[16:], uint16(r.n))
	}
	p.is |= isPSS
}

// startNCQ accepts a READ/WRITE FPDMA QUEUED: CI is cleared at once and
// the transfer runs on a goroutine of its own, so up to 32 tags proceed
// together; each completes with a Set Device Bits FIS. A command alone on
// the port (nothing else issued, no tag in flight) runs on the port's
// goroutine instead: at queue depth 1 a goroutine start only adds the
// wake-up of an idle thread, which costs more than a cached 4 KiB read on
// a host with few CPUs. Commands issued meanwhile wait for that one only.
func (p *port) startNCQ(slot int, gen uint64, c *command) {
	tag := int(c.f.count>>3) & 31
	p.h.mu.Lock()
	if gen != p.gen {
		p.active--
		p.h.unlock()
		return
	}
	p.busy &^= 1 << slot
	p.ci &^= 1 << slot
	alone := p.ci&^p.busy == 0 && len(p.ncq) == 0
	p.h.unlock()
	select {
	case p.ncq <- struct{}{}:
	case <-p.quit:
		p.h.mu.Lock()
		p.active--
		p.h.unlock()
		return
	}
	if alone {
		r := p.dev.execute(c)
		p.completeNCQ(tag, gen, c.f, r)
		<-p.ncq
		return
	}
	p.ncqWG.Add(1)
	go func() {
		defer p.ncqWG.Done()
		defer func() { <-p.ncq }()
		r := p.dev.execute(c)
		p.completeNCQ(tag, gen, c.f, r)
	}()
}

// completeNCQ finishes a queued command with a Set Device Bits FIS. The
// first failure halts the port (PxSACT and PxCI stay as they are) and is
// kept for log 10h; the device sends nothing for the other tags after it:
// they count as aborted and the host issues them again after its recovery
// (AHCI 1.3 6.2.2.2, SATA 3.x 13.6.3.3).
func (p *port) completeNCQ(tag int, gen uint64, f h2d, r result) {
	p.h.mu.Lock()
	defer p.h.unlock()
	p.active--
	if gen != p.gen || p.halted {
		return
	}
	status := r.status & 0x77 // SDB carries status bits 6:4 and 2:0
	if b := p.fisLocked(rfisSDB, 8); b != nil {
		b[0], b[1], b[2], b[3] = fisSDB, fisI, status, r.errReg
		done := uint32(1) << tag
		if r.status&statERR != 0 {
			done = 0
		}
		binary.LittleEndian.PutUint32(b[4:], done)
	}
	p.tfd = p.tfd&^0xff77 | uint32(r.errReg)<<8 | uint32(status)
	p.is |= isSDBS | r.hostErr
	if r.status&statERR != 0 || r.hostErr != 0 {
		p.dev.noteNCQError(tag, f, r)
		p.is |= isTFES
		p.halted = true
	} else {
		p.sact &^= 1 << tag
	}
	p.h.interruptLocked()
}

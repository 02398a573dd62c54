// Package nvme is an NVMe 1.4 controller on a PCI function: the controller
// registers and doorbells in BAR 0 with its MSI-X table, the admin command
// set, and one namespace served from a raw image (storage/raw) through the
// NVM command set (read, write, flush, write zeroes, dataset management).
//
// Every submission queue runs on a goroutine of its own, never on the vCPU
// thread that rings its doorbell; an I/O queue executes up to 64 commands
// at once on goroutines of their own and completes them as they finish (a
// Flush covers the writes completed before it, as NVMe defines it). Doorbells arrive as MMIO writes or, once
// the driver configured shadow doorbells (Doorbell Buffer Config), through
// ioeventfds: the value is then read from the shadow buffer, since an
// ioeventfd carries no data.
//
// Everything the guest writes is hostile: register values, queue sizes and
// addresses, submission entries and PRP lists are checked, and a bad command
// is answered with the error status the specification names. No guest value
// makes the controller panic, block a vCPU, or touch memory outside guest
// RAM or bytes outside the image.
package nvme

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/vmmdev/vmm/devices/pci"
	"github.com/vmmdev/vmm/storage/block"
)

// PCI identity: QEMU's NVMe controller, which drivers know.
const (
	VendorID = 0x1b36
	DeviceID = 0x0010
	// ClassCode is mass storage, non-volatile memory, NVM Express.
	ClassCode = 0x010802
)

// Controller registers (NVMe 1.4 §3.1).
const (
	regCAP     = 0x00
	regVS      = 0x08
	regINTMS   = 0x0c
	regINTMC   = 0x10
	regCC      = 0x14
	regCSTS    = 0x1c
	regNSSR    = 0x20
	regAQA     = 0x24
	regASQ     = 0x28
	regACQ     = 0x30
	regsSize   = 0x40
	doorbellAt = 0x1000
)

// BAR 0 layout: registers, doorbells (stride 4), MSI-X table and PBA.
const (
	barSize      = 0x4000
	msixTableOff = 0x2000
	msixPBAOff   = 0x3000
)

// Version is NVMe 1.4.
const Version = 0x00010400

// Limits.
const (
	// MaxQueueEntries is the largest queue (CAP.MQES + 1).
	MaxQueueEntries = 1024
	// MaxIOQueues caps the I/O queue pairs (one per vCPU).
	MaxIOQueues = 64
	// pageSize is the only memory page size offered (CAP.MPSMIN = MPSMAX = 0).
	pageSize = 4096
	// mdts is the maximum data transfer size as a power of two of pages: 512 KiB.
	mdts = 7
	// maxTransfer is MDTS in bytes.
	maxTransfer = pageSize << mdts
	// BlockSize is the namespace's logical block size.
	BlockSize = block.SectorSize
	// aerLimit is how many Asynchronous Event Requests may be held (AERL + 1).
	aerLimit = 4
	// timeout is CAP.TO in 500 ms units: how long a driver waits for RDY.
	timeout = 20
)

// CC fields.
const (
	ccEN       = 1 << 0
	ccCSSShift = 4
	ccMPSShift = 7
	ccAMSShift = 11
	ccSHNShift = 14
	ccSQEShift = 16
	ccCQEShift = 20
)

// CSTS fields.
const (
	cstsRDY         = 1 << 0
	cstsCFS         = 1 << 1
	cstsSHSTMask    = 3 << 2
	cstsSHSTRunning = 1 << 2
	cstsSHSTDone    = 2 << 2
)

// Sentinel errors of New.
var ErrConfig = errors.New("nvme: invalid configuration")

// Memory is guest-physical memory: Slice returns the host view of
// [gpa, gpa+n) or an error when the range is not inside one RAM region
// (vmm.Memory; the virtio devices use the same interface).
type Memory interface {
	Slice(gpa, n uint64) ([]byte, error)
}

// IOEvents lets doorbell writes be delivered without a trip through the
// vCPU loop: Add arranges for a guest write of length bytes at the MMIO
// address addr to call fn on a goroutine of its own, and returns a function
// that undoes it (vmm implements it with KVM_IOEVENTFD, as for virtio).
type IOEvents interface {
	Add(addr uint64, length int, fn func()) (remove func(), err error)
}

// Config assembles a controller.
type Config struct {
	Name string
	// Image is the namespace's backing store; the controller does not close it.
	Image block.Device
	// Serial is the controller's serial number (at most 20 ASCII bytes); it
	// also makes the subsystem NQN unique, which Linux requires of two
	// controllers in one machine.
	Serial string
	// IOQueues is how many I/O queue pairs to offer (normally one per vCPU);
	// it is raised to 2 (what OVMF creates) and capped at MaxIOQueues.
	IOQueues int
	Mem      Memory
	MSI      pci.MSISender
	// Events, if set, serves shadowed doorbells through ioeventfds.
	Events IOEvents
	Log    *slog.Logger
}

// Controller is one NVMe controller with one namespace.
type Controller struct {
	img    block.Device
	mem    Memory
	events IOEvents
	log    *slog.Logger
	name   string
	serial string
	nqueue int // I/O queue pairs offered
	fn     *pci.Function
	msix   *pci.MSIX
	stats  stats

	// sqs and cqs are indexed by queue ID; doorbells and the I/O path read
	// them without the lock, admin commands and resets change them with it.
	sqs []atomic.Pointer[subQueue]
	cqs []atomic.Pointer[compQueue]

	// wce is the Volatile Write Cache feature: when off, writes are made
	// durable before they complete.
	wce atomic.Bool

	mu          sync.Mutex
	cc, csts    uint32
	intms       uint32
	aqa         uint32
	asq, acq    uint64
	feat        features
	aers        []uint16 // held Asynchronous Event Requests (command IDs)
	dbbuf       *dbbuf   // shadow doorbells, nil until configured
	barAddr     uint64
	barMapped   bool
	removers    []func() // ioeventfds of the shadowed doorbells
	shutdownGen uint64   // tells a shutdown flush whether it is still current
}

// dbbuf is the Doorbell Buffer Config state: the shadow doorbells and the
// event indexes, as host views of guest memory, one slot per doorbell.
type dbbuf struct {
	shadow, ei []byte
}

// New builds a controller; add Function() to a pci.Bus.
func New(cfg Config) (*Controller, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Image == nil || cfg.Mem == nil || cfg.MSI == nil {
		return nil, fmt.Errorf("%w: %s: image, memory and MSI are required", ErrConfig, cfg.Name)
	}
	if len(cfg.Serial) > 20 {
		return nil, fmt.Errorf("%w: %s: serial %q is longer than 20 bytes", ErrConfig, cfg.Name, cfg.Serial)
	}
	n := min(max(cfg.IOQueues, 2), MaxIOQueues)
	c := &Controller{img: cfg.Image, mem: cfg.Mem, events: cfg.Events, log: log, name: cfg.Name,
		serial: cfg.Serial, nqueue: n,
		sqs: make([]atomic.Pointer[subQueue], n+1), cqs: make([]atomic.Pointer[compQueue], n+1)}
	c.feat = defaultFeatures()
	c.wce.Store(true)
	msix, err := pci.NewMSIX(n+1, cfg.MSI)
	if err != nil {
		return nil, fmt.Errorf("nvme %s: %w", cfg.Name, err)
	}
	msix.OnSendError(func(err error) { log.Warn("nvme: interrupt", "device", cfg.Name, "err", err) })
	c.msix = msix
	c.fn, err = pci.NewFunction(cfg.Name, pci.Identity{
		Vendor: VendorID, Device: DeviceID, SubVendor: 0x1af4, Subsystem: 0x1100, Revision: 2, Class: ClassCode,
	}, []pci.BAR{{Index: 0, Kind: pci.BARMem64, Size: barSize, Dev: barDevice{c}, Moved: c.barMoved}},
		[]pci.Capability{msix.Capability(0, msixTableOff, msixPBAOff)}, log)
	if err != nil {
		return nil, fmt.Errorf("nvme %s: %w", cfg.Name, err)
	}
	return c, nil
}

// Function is the PCI function to add to the bus.
func (c *Controller) Function() *pci.Function { return c.fn }

// IOQueues is how many I/O queue pairs the controller offers.
func (c *Controller) IOQueues() int { return c.nqueue }

// capability is the CAP register.
func (c *Controller) capability() uint64 {
	return uint64(MaxQueueEntries-1) | 1<<16 /* CQR */ | uint64(timeout)<<24 | 1<<37 /* CSS: NVM */
}

// regsImage renders the register block as the driver reads it now.
func (c *Controller) regsImage() []byte {
	b := make([]byte, regsSize)
	le := binary.LittleEndian
	le.PutUint64(b[regCAP:], c.capability())
	le.PutUint32(b[regVS:], Version)
	le.PutUint32(b[regINTMS:], c.intms)
	le.PutUint32(b[regINTMC:], c.intms)
	le.PutUint32(b[regCC:], c.cc)
	le.PutUint32(b[regCSTS:], c.csts)
	le.PutUint32(b[regAQA:], c.aqa)
	le.PutUint64(b[regASQ:], c.asq)
	le.PutUint64(b[regACQ:], c.acq)
	return b
}

func (c *Controller) readRegs(off uint64, data []byte) {
	c.mu.Lock()
	img := c.regsImage()
	c.mu.Unlock()
	clear(data)
	if off < uint64(len(img)) {
		copy(data, img[off:])
	}
}

// writeRegs merges the write into the register image and acts on each
// register it touched, so 32-bit halves of 64-bit registers (OVMF, SeaBIOS)
// work as full writes do.
func (c *Controller) writeRegs(off uint64, data []byte) {
	c.mu.Lock()
	img := c.regsImage()
	if off >= uint64(len(img)) {
		c.mu.Unlock()
		return
	}
	n := copy(img[off:], data)
	end := off + uint64(n)
	touches := func(reg, size uint64) bool { return off < reg+size && end > reg }
	// written is what the access wrote into a 32-bit register, zeros elsewhere.
	written := func(reg uint64) uint32 {
		var v [4]byte
		for i := range v {
			if o := reg + uint64(i); o >= off && o < end {
				v[i] = img[o]
			}
		}
		return binary.LittleEndian.Uint32(v[:])
	}
	le := binary.LittleEndian
	if touches(regINTMS, 4) {
		c.intms |= written(regINTMS)
	}
	if touches(regINTMC, 4) {
		c.intms &^= written(regINTMC)
	}
	// The admin queue registers are latched when the controller is enabled.
	if c.cc&ccEN == 0 {
		if touches(regAQA, 4) {
			c.aqa = le.Uint32(img[regAQA:]) & 0x0fff0fff
		}
		if touches(regASQ, 8) {
			c.asq = le.Uint64(img[regASQ:]) &^ 0xfff
		}
		if touches(regACQ, 8) {
			c.acq = le.Uint64(img[regACQ:]) &^ 0xfff
		}
	}
	var stops []*subQueue
	if touches(regCC, 4) && c.setCC(le.Uint32(img[regCC:])) {
		stops = c.detachLocked()
	}
	c.mu.Unlock()
	for _, sq := range stops {
		sq.stop()
	}
}

// setCC applies a CC write; it reports whether the controller must be
// reset (EN went from 1 to 0), which the caller does without the lock.
func (c *Controller) setCC(v uint32) bool {
	old := c.cc
	c.cc = v
	switch {
	case old&ccEN != 0 && v&ccEN == 0:
		return true
	case old&ccEN == 0 && v&ccEN != 0:
		if err := c.enableLocked(); err != nil {
			c.log.Warn("nvme: enable failed", "device", c.name, "err", err)
			c.csts |= cstsCFS
		}
	}
	shn := (v >> ccSHNShift) & 3
	if v&ccEN != 0 && shn != 0 && (old>>ccSHNShift)&3 == 0 {
		c.startShutdownLocked()
	}
	if shn == 0 && c.csts&cstsSHSTMask != 0 {
		c.shutdownGen++
		c.csts &^= cstsSHSTMask
	}
	return false
}

// enableLocked brings up the admin queue pair (CC.EN 0 -> 1).
func (c *Controller) enableLocked() error {
	v := c.cc
	if (v>>ccCSSShift)&7 != 0 || (v>>ccMPSShift)&0xf != 0 || (v>>ccAMSShift)&7 != 0 {
		return fmt.Errorf("unsupported CC %#x (command set, page size or arbitration)", v)
	}
	sqSize := int(c.aqa&0xfff) + 1
	cqSize := int(c.aqa>>16&0xfff) + 1
	if sqSize < 2 || cqSize < 2 {
		return fmt.Errorf("admin queue sizes %d/%d", sqSize, cqSize)
	}
	cq, err := c.newCQ(0, c.acq, cqSize, 0, true)
	if err != nil {
		return fmt.Errorf("admin completion queue: %w", err)
	}
	sq, err := c.newSQ(0, c.asq, sqSize, cq)
	if err != nil {
		return fmt.Errorf("admin submission queue: %w", err)
	}
	c.cqs[0].Store(cq)
	c.sqs[0].Store(sq)
	sq.start(c.admin, false)
	c.csts = c.csts&^cstsCFS | cstsRDY
	return nil
}

// startShutdownLocked makes the image durable on a goroutine of its own
// (never on the vCPU thread) and then reports shutdown complete.
func (c *Controller) startShutdownLocked() {
	c.csts = c.csts&^cstsSHSTMask | cstsSHSTRunning
	c.shutdownGen++
	gen := c.shutdownGen
	go func() {
		if err := c.img.Flush(); err != nil {
			c.log.Warn("nvme: flush at shutdown", "device", c.name, "err", err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.shutdownGen == gen {
			c.csts = c.csts&^cstsSHSTMask | cstsSHSTDone
		}
	}()
}

// Close stops every queue and removes the ioeventfds (the VM is stopping);
// the image stays open.
func (c *Controller) Close() {
	c.mu.Lock()
	stops := c.detachLocked()
	c.cc = 0
	c.mu.Unlock()
	for _, sq := range stops {
		sq.stop()
	}
}

// detachLocked returns the controller to its disabled state (CC.EN 1 -> 0):
// every queue deleted, held AERs dropped, shadow doorbells and features
// back to their defaults. It returns the submission queues whose goroutines
// the caller must stop once the lock is released: an admin command may be
// waiting for the lock, and it finds its queue gone and gives up.
func (c *Controller) detachLocked() []*subQueue {
	var stops []*subQueue
	for i := range c.sqs {
		if sq := c.sqs[i].Swap(nil); sq != nil {
			sq.detach()
			stops = append(stops, sq)
		}
	}
	for i := range c.cqs {
		if cq := c.cqs[i].Swap(nil); cq != nil {
			cq.wake()
		}
	}
	for _, r := range c.removers {
		r()
	}
	c.removers = nil
	c.dbbuf = nil
	c.aers = nil
	c.feat = defaultFeatures()
	c.wce.Store(true)
	c.shutdownGen++
	c.csts &^= cstsRDY | cstsCFS | cstsSHSTMask
	return stops
}

// barMoved follows the BAR for the ioeventfds of shadowed doorbells.
func (c *Controller) barMoved(addr uint64, mapped bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.barAddr, c.barMapped = addr, mapped
	c.rearmEventsLocked()
}

// rearmEventsLocked (re)registers an ioeventfd for every I/O queue doorbell
// while shadow doorbells are on; without them a doorbell's value is needed
// and the write must reach the controller as an MMIO exit.
func (c *Controller) rearmEventsLocked() {
	for _, r := range c.removers {
		r()
	}
	c.removers = nil
	if c.events == nil || c.dbbuf == nil || !c.barMapped {
		return
	}
	for qid := 1; qid <= c.nqueue; qid++ {
		sqDB := c.barAddr + doorbellAt + uint64(8*qid)
		rm, err := c.events.Add(sqDB, 4, func() { c.kickSQ(qid) })
		if err != nil {
			// Doorbells still arrive as MMIO exits; only slower.
			c.log.Warn("nvme: ioeventfd", "device", c.name, "queue", qid, "err", err)
			return
		}
		c.removers = append(c.removers, rm)
		rm, err = c.events.Add(sqDB+4, 4, func() { c.kickCQ(qid) })
		if err != nil {
			c.log.Warn("nvme: ioeventfd", "device", c.name, "queue", qid, "err", err)
			return
		}
		c.removers = append(c.removers, rm)
	}
}

func (c *Controller) kickSQ(qid int) {
	if sq := c.sqs[qid].Load(); sq != nil {
		sq.kick()
	}
}

func (c *Controller) kickCQ(qid int) {
	if cq := c.cqs[qid].Load(); cq != nil {
		cq.wake()
	}
}

// doorbell handles a write to the doorbell array. A doorbell of a queue
// that does not exist, or a value beyond the queue, is ignored (counted):
// the specification lets the controller report it through an asynchronous
// event, which no driver relies on.
func (c *Controller) doorbell(off uint64, data []byte) {
	if off%4 != 0 || len(data) != 4 {
		c.stats.badDoorbells.Add(1)
		return
	}
	idx := off / 4
	qid := idx / 2
	v := binary.LittleEndian.Uint32(data)
	if qid >= uint64(len(c.sqs)) {
		c.stats.badDoorbells.Add(1)
		return
	}
	if idx%2 == 0 {
		sq := c.sqs[qid].Load()
		if sq == nil || v >= uint32(sq.size) {
			c.stats.badDoorbells.Add(1)
			return
		}
		sq.tail.Store(v)
		sq.kick()
		return
	}
	cq := c.cqs[qid].Load()
	if cq == nil || v >= uint32(cq.size) {
		c.stats.badDoorbells.Add(1)
		return
	}
	cq.head.Store(v)
	cq.wake()
}

// barDevice decodes BAR 0.
type barDevice struct{ c *Controller }

func (b barDevice) Read(off uint64, data []byte) {
	c := b.c
	switch {
	case off < regsSize:
		c.readRegs(off, data)
	case off >= msixTableOff && off < msixPBAOff:
		c.msix.ReadTable(off-msixTableOff, data)
	case off >= msixPBAOff && off < barSize:
		c.msix.ReadPBA(off-msixPBAOff, data)
	default:
		// Doorbells are write-only.
		clear(data)
	}
}

func (b barDevice) Write(off uint64, data []byte) {
	c := b.c
	switch {
	case off < regsSize:
		c.writeRegs(off, data)
	case off >= doorbellAt && off < msixTableOff:
		c.doorbell(off-doorbellAt, data)
	case off >= msixTableOff && off < msixPBAOff:
		c.msix.WriteTable(off-msixTableOff, data)
	}
}

// stats are counters for the report and the SMART log.
type stats struct {
	reads, writes         atomic.Uint64 // commands
	blocksRead, blocksWrt atomic.Uint64
	badDoorbells          atomic.Uint64
}

// Stats is a snapshot of the controller's counters.
type Stats struct {
	Reads, Writes, BlocksRead, BlocksWritten, BadDoorbells uint64
}

// Stats returns the counters.
func (c *Controller) Stats() Stats {
	return Stats{Reads: c.stats.reads.Load(), Writes: c.stats.writes.Load(),
		BlocksRead: c.stats.blocksRead.Load(), BlocksWritten: c.stats.blocksWrt.Load(),
		BadDoorbells: c.stats.badDoorbells.Load()}
}

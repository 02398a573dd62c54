package testdev

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"

	"github.com/vmmdev/vmm/devices/pci"
)

// pci-testdev (QEMU hw/misc/pci-testdev.c, docs/specs/pci-testdev.rst):
// PCI 1b36:0005 with a memory BAR 0 and an I/O BAR 1. Each BAR starts with
// a header the guest selects a test through:
//
//	0   test       write-only: start test N of this BAR
//	1   width      access width of the test (1, 2 or 4; else no such test)
//	4   offset     where in the BAR the test's writes go
//	8   data       what to write there
//	12  count      writes seen since the test started
//	16  name       NUL-terminated
//
// Tests 0-2 of each BAR are "no-eventfd" (every write exits to vmm),
// "wildcard-eventfd" (KVM_IOEVENTFD, any value) and "datamatch-eventfd"
// (KVM_IOEVENTFD, only data): they exercise the three ways KVM completes a
// guest write.
const (
	PCIVendor = 0x1b36 // Red Hat, QEMU's devices
	PCIDevice = 0x0005
	// PCIMemBARSize and PCIIOBARSize are the BARs' sizes: QEMU's 2 KiB and
	// 128-port test areas, each twice over.
	PCIMemBARSize = 4096
	PCIIOBARSize  = 256

	pciClassOther = 0xff0000

	hdrTest   = 0
	hdrWidth  = 1
	hdrOffset = 4
	hdrData   = 8
	hdrCount  = 12
	hdrName   = 16

	pciTestWidth = 1
	pciTestData  = 0xfa // QEMU's IOTEST_DATAMATCH
	testsPerBAR  = 3
)

// pciTestKinds are the tests of each BAR, in test-number order.
var pciTestKinds = [testsPerBAR]string{"no-eventfd", "wildcard-eventfd", "datamatch-eventfd"}

// Notifiers registers KVM_IOEVENTFDs for the eventfd tests: the guest's
// one-byte writes at addr (a port when pio), only those of value data when
// match, are counted in the kernel and never exit.
type Notifiers interface {
	Watch(addr uint64, pio, match bool, data uint64) (Watch, error)
}

// Watch is one registered ioeventfd.
type Watch interface {
	// Take returns the writes counted since the last Take.
	Take() uint64
	Close()
}

// pciTest is one of the six tests.
type pciTest struct {
	io     bool // the I/O BAR's
	kind   int  // index into pciTestKinds
	offset uint32
	count  uint32
	watch  Watch // while the eventfd test runs and its BAR is decoded
}

func (t *pciTest) name() string {
	if t.io {
		return "portio-" + pciTestKinds[t.kind]
	}
	return "mmio-" + pciTestKinds[t.kind]
}

// header renders the test's header as the guest reads it.
func (t *pciTest) header() []byte {
	name := t.name()
	h := make([]byte, hdrName+len(name)+1)
	h[hdrWidth] = pciTestWidth
	binary.LittleEndian.PutUint32(h[hdrOffset:], t.offset)
	binary.LittleEndian.PutUint32(h[hdrData:], pciTestData)
	binary.LittleEndian.PutUint32(h[hdrCount:], t.count)
	copy(h[hdrName:], name)
	return h
}

// PCITestdev is pci-testdev. Its BARs are safe for concurrent use.
type PCITestdev struct {
	fn     *pci.Function
	events Notifiers
	log    *slog.Logger

	mu      sync.Mutex
	tests   [2 * testsPerBAR]pciTest
	current int       // index into tests, -1 for none
	bar     [2]uint64 // where each BAR is decoded
	mapped  [2]bool
}

// NewPCITestdev returns pci-testdev. events may be nil: then every test's
// writes exit to vmm and are counted here.
func NewPCITestdev(events Notifiers, log *slog.Logger) (*PCITestdev, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &PCITestdev{events: events, log: log, current: -1}
	for i := range d.tests {
		t := &d.tests[i]
		t.io, t.kind = i >= testsPerBAR, i%testsPerBAR
		// QEMU: the test area's size (2 KiB or 128 ports) plus the test's
		// global index, so no two tests share an address.
		area := uint32(PCIMemBARSize / 2)
		if t.io {
			area = PCIIOBARSize / 2
		}
		t.offset = area + uint32(i)*pciTestWidth
	}
	fn, err := pci.NewFunction("pci-testdev", pci.Identity{
		Vendor: PCIVendor, Device: PCIDevice, SubVendor: 0x1af4, Subsystem: 0x1100, Class: pciClassOther,
	}, []pci.BAR{
		{Index: 0, Kind: pci.BARMem32, Size: PCIMemBARSize, Dev: pciBAR{d, false}, Moved: d.moved(false)},
		{Index: 1, Kind: pci.BARIO, Size: PCIIOBARSize, Dev: pciBAR{d, true}, Moved: d.moved(true)},
	}, nil, log)
	if err != nil {
		return nil, fmt.Errorf("pci-testdev: %w", err)
	}
	d.fn = fn
	return d, nil
}

// Function is the PCI function to add to the bus.
func (d *PCITestdev) Function() *pci.Function { return d.fn }

// Close removes the running test's ioeventfd.
func (d *PCITestdev) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopLocked()
}

func barIndex(io bool) int {
	if io {
		return 1
	}
	return 0
}

// moved follows a BAR for the running eventfd test's ioeventfd.
func (d *PCITestdev) moved(io bool) func(addr uint64, mapped bool) {
	return func(addr uint64, mapped bool) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.bar[barIndex(io)], d.mapped[barIndex(io)] = addr, mapped
		if d.current >= 0 && d.tests[d.current].io == io {
			t := &d.tests[d.current]
			d.unwatchLocked(t)
			d.watchLocked(t)
		}
	}
}

// watchLocked registers t's ioeventfd if t is an eventfd test and its BAR
// is decoded. Writes the ioeventfd does not take (it failed, or another
// width) still arrive as exits and are counted in Write.
func (d *PCITestdev) watchLocked(t *pciTest) {
	if t.kind == 0 || d.events == nil || !d.mapped[barIndex(t.io)] {
		return
	}
	w, err := d.events.Watch(d.bar[barIndex(t.io)]+uint64(t.offset), t.io, t.kind == 2, pciTestData)
	if err != nil {
		d.log.Warn("pci-testdev: ioeventfd", "test", t.name(), "err", err)
		return
	}
	t.watch = w
}

// unwatchLocked folds what t's ioeventfd counted into count and removes it.
func (d *PCITestdev) unwatchLocked(t *pciTest) {
	if t.watch == nil {
		return
	}
	t.count += uint32(t.watch.Take())
	t.watch.Close()
	t.watch = nil
}

func (d *PCITestdev) stopLocked() {
	if d.current >= 0 {
		d.unwatchLocked(&d.tests[d.current])
	}
	d.current = -1
}

// pciBAR is one BAR's window onto the device.
type pciBAR struct {
	d  *PCITestdev
	io bool
}

// Read returns the running test's header (QEMU: whichever BAR it is read
// through); nothing running, or past the header, reads as zero.
func (b pciBAR) Read(off uint64, data []byte) {
	d := b.d
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(data)
	if d.current < 0 {
		return
	}
	t := &d.tests[d.current]
	if t.watch != nil {
		// The guest's writes to the ioeventfd completed in the kernel
		// before this read's exit: the counter has them all.
		t.count += uint32(t.watch.Take())
	}
	h := t.header()
	if off < uint64(len(h)) {
		copy(data, h[off:])
	}
}

// Write starts a test (at the test register) or is one of its writes.
func (b pciBAR) Write(off uint64, data []byte) {
	d := b.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if off == hdrTest {
		d.stopLocked()
		var v [8]byte
		copy(v[:], data)
		if n := binary.LittleEndian.Uint64(v[:]); n < testsPerBAR {
			d.current = barIndex(b.io)*testsPerBAR + int(n)
			t := &d.tests[d.current]
			t.count = 0
			d.watchLocked(t)
		}
		return
	}
	if d.current < 0 {
		return
	}
	t := &d.tests[d.current]
	if t.io != b.io || off != uint64(t.offset) {
		return
	}
	if t.kind != 1 && (len(data) != pciTestWidth || data[0] != pciTestData) {
		return
	}
	t.count++
}

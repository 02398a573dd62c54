package nvme

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/vmmdev/vmm/devices/internal/fakeram"
	"github.com/vmmdev/vmm/storage/block"
	"github.com/vmmdev/vmm/storage/raw"
)

// fakeMem is guest RAM at [0, len).
type fakeMem = fakeram.RAM

// fakeMSI records the vectors delivered.
type fakeMSI struct {
	mu   sync.Mutex
	sent map[int]int
}

func (f *fakeMSI) SendMSI(v int, _, _, _ uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent[v]++
	return nil
}

func (f *fakeMSI) count(v int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent[v]
}

// fakeEvents records ioeventfd registrations; fire calls one.
type fakeEvents struct {
	mu  sync.Mutex
	fns map[uint64]func()
}

func (f *fakeEvents) Add(addr uint64, _ int, fn func()) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fns[addr] = fn
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.fns, addr)
	}, nil
}

func (f *fakeEvents) fire(addr uint64) bool {
	f.mu.Lock()
	fn := f.fns[addr]
	f.mu.Unlock()
	if fn != nil {
		fn()
	}
	return fn != nil
}

// Guest memory layout of the test driver.
const (
	memSize  = 8 << 20
	asqAt    = 0x10000
	acqAt    = 0x11000
	ioSQAt   = 0x20000 // + 0x10000 per queue
	ioCQAt   = 0x60000
	dataAt   = 0x100000
	adminLen = 16
)

// driver plays an NVMe host driver against a controller in fake memory:
// the test counterpart of vqdriver for virtio.
type driver struct {
	t    *testing.T
	c    *Controller
	mem  fakeMem
	msi  *fakeMSI
	ev   *fakeEvents
	path string
	qs   map[uint16]*hostQueue
	cid  uint16
}

type hostQueue struct {
	sqAt, cqAt       uint64
	size             uint32
	tail, head       uint32
	phase            uint32
	shadowDB, shadEI uint64 // shadow doorbell buffers, 0 when not shadowed
}

type cqe struct {
	dw0    uint32
	sqhd   uint16
	sqid   uint16
	cid    uint16
	status uint16 // without the phase bit: SC | SCT<<8 | DNR<<14
}

func (e cqe) sc() uint16 { return e.status &^ statusDNR }

type opts struct {
	blocks   int
	readOnly bool
	queues   int
	// wrap, if set, stands between the controller and the image.
	wrap func(block.Device) block.Device
}

func newDriver(t *testing.T, o opts) *driver {
	t.Helper()
	if o.blocks == 0 {
		o.blocks = 2048
	}
	path := filepath.Join(t.TempDir(), "disk.img")
	img := make([]byte, o.blocks*BlockSize)
	for i := range img {
		img[i] = byte(i / BlockSize)
	}
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	im, err := raw.Open(raw.Options{Path: path, ReadOnly: o.readOnly}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &driver{t: t, mem: make(fakeMem, memSize), msi: &fakeMSI{sent: map[int]int{}},
		ev: &fakeEvents{fns: map[uint64]func(){}}, path: path, qs: map[uint16]*hostQueue{}}
	var dev block.Device = im
	if o.wrap != nil {
		dev = o.wrap(dev)
	}
	d.c, err = New(Config{Name: "nvme-test", Image: dev, Serial: "SN123", IOQueues: o.queues,
		Mem: d.mem, MSI: d.msi, Events: d.ev})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.c.Close()
		im.Close()
	})
	return d
}

func (d *driver) write32(off uint64, v uint32) {
	barDevice{d.c}.Write(off, binary.LittleEndian.AppendUint32(nil, v))
}

func (d *driver) write64(off uint64, v uint64) {
	barDevice{d.c}.Write(off, binary.LittleEndian.AppendUint64(nil, v))
}

func (d *driver) read32(off uint64) uint32 {
	b := make([]byte, 4)
	barDevice{d.c}.Read(off, b)
	return binary.LittleEndian.Uint32(b)
}

func (d *driver) read64(off uint64) uint64 {
	b := make([]byte, 8)
	barDevice{d.c}.Read(off, b)
	return binary.LittleEndian.Uint64(b)
}

const ccEnable = ccEN | 6<<ccSQEShift | 4<<ccCQEShift

// enable programs the admin queue and sets CC.EN, as a driver does.
func (d *driver) enable() {
	d.t.Helper()
	d.write32(regAQA, (adminLen-1)<<16|(adminLen-1))
	// 32-bit halves, as OVMF and SeaBIOS write them.
	d.write32(regASQ, asqAt)
	d.write32(regASQ+4, 0)
	d.write64(regACQ, acqAt)
	d.write32(regCC, ccEnable)
	if d.read32(regCSTS)&cstsRDY == 0 {
		d.t.Fatalf("CSTS %#x: not ready after enable", d.read32(regCSTS))
	}
	d.qs[0] = &hostQueue{sqAt: asqAt, cqAt: acqAt, size: adminLen, phase: 1}
}

// sqe builds a submission entry.
type sqe struct {
	opc                      uint8
	flags                    uint8 // FUSE and PSDT bits of CDW0
	nsid                     uint32
	prp1, prp2               uint64
	cdw10, cdw11, cdw12, c13 uint32
}

// submit places e on queue qid and rings (or shadows) its tail doorbell.
func (d *driver) submit(qid uint16, e sqe) uint16 {
	q := d.qs[qid]
	d.cid++
	b := d.mem[q.sqAt+uint64(q.tail)*sqeSize:][:sqeSize]
	clear(b)
	le := binary.LittleEndian
	le.PutUint32(b[0:], uint32(e.opc)|uint32(e.flags)<<8|uint32(d.cid)<<16)
	le.PutUint32(b[4:], e.nsid)
	le.PutUint64(b[24:], e.prp1)
	le.PutUint64(b[32:], e.prp2)
	le.PutUint32(b[40:], e.cdw10)
	le.PutUint32(b[44:], e.cdw11)
	le.PutUint32(b[48:], e.cdw12)
	le.PutUint32(b[52:], e.c13)
	q.tail = (q.tail + 1) % q.size
	d.ringSQ(qid)
	return d.cid
}

func (d *driver) ringSQ(qid uint16) { d.ring(qid, 8*uint64(qid), d.qs[qid].tail) }

func (d *driver) ringCQ(qid uint16) { d.ring(qid, 8*uint64(qid)+4, d.qs[qid].head) }

// ring publishes a doorbell value: with shadow doorbells as Linux does
// (store, full barrier, compare with the event index), else by MMIO.
func (d *driver) ring(qid uint16, off uint64, v uint32) {
	q := d.qs[qid]
	if q.shadowDB != 0 {
		old := atomic.SwapUint32((*uint32)(unsafe.Pointer(&d.mem[q.shadowDB+off])), v)
		ei := atomic.LoadUint32((*uint32)(unsafe.Pointer(&d.mem[q.shadEI+off])))
		// nvme_dbbuf_need_event.
		if uint16(v-ei-1) >= uint16(v-old) {
			return
		}
		if d.ev.fire(0xc0000000 + doorbellAt + off) {
			return
		}
	}
	d.write32(doorbellAt+off, v)
}

// poll returns the next completion of queue qid, or false after timeout.
func (d *driver) poll(qid uint16, timeout time.Duration) (cqe, bool) {
	q := d.qs[qid]
	deadline := time.Now().Add(timeout)
	for {
		e := d.mem[q.cqAt+uint64(q.head)*cqeSize:][:cqeSize]
		dw3 := atomic.LoadUint32((*uint32)(unsafe.Pointer(&e[12])))
		if (dw3>>16)&1 == q.phase {
			le := binary.LittleEndian
			dw2 := le.Uint32(e[8:])
			out := cqe{dw0: le.Uint32(e[0:]), sqhd: uint16(dw2), sqid: uint16(dw2 >> 16),
				cid: uint16(dw3), status: uint16(dw3 >> 17)}
			q.head = (q.head + 1) % q.size
			if q.head == 0 {
				q.phase ^= 1
			}
			d.ringCQ(qid)
			return out, true
		}
		if time.Now().After(deadline) {
			return cqe{}, false
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func (d *driver) wait(qid uint16) cqe {
	d.t.Helper()
	e, ok := d.poll(qid, 5*time.Second)
	if !ok {
		d.t.Fatalf("queue %d: no completion", qid)
	}
	return e
}

// cmd submits one command and waits for its completion.
func (d *driver) cmd(qid uint16, e sqe) cqe {
	d.t.Helper()
	cid := d.submit(qid, e)
	c := d.wait(qid)
	if c.cid != cid {
		d.t.Fatalf("completion for cid %d, want %d", c.cid, cid)
	}
	return c
}

func (d *driver) ok(qid uint16, e sqe) cqe {
	d.t.Helper()
	c := d.cmd(qid, e)
	if c.status != 0 {
		d.t.Fatalf("opcode %#x on queue %d: status %#x", e.opc, qid, c.status)
	}
	return c
}

func (d *driver) status(qid uint16, e sqe) uint16 {
	d.t.Helper()
	return d.cmd(qid, e).sc()
}

// createQueuePair creates I/O CQ and SQ qid of size entries, interrupts on
// vector qid.
func (d *driver) createQueuePair(qid uint16, size uint32) {
	d.t.Helper()
	sqAt := uint64(ioSQAt + 0x10000*uint64(qid-1))
	cqAt := uint64(ioCQAt + 0x4000*uint64(qid-1))
	d.ok(0, sqe{opc: adminCreateCQ, prp1: cqAt, cdw10: (size-1)<<16 | uint32(qid), cdw11: uint32(qid)<<16 | 3})
	d.ok(0, sqe{opc: adminCreateSQ, prp1: sqAt, cdw10: (size-1)<<16 | uint32(qid), cdw11: uint32(qid)<<16 | 1})
	d.qs[qid] = &hostQueue{sqAt: sqAt, cqAt: cqAt, size: size, phase: 1}
}

// rw is a read or write of nlb blocks at slba through data at dataAt+off.
func rw(write bool, slba uint64, nlb uint32, prp1, prp2 uint64) sqe {
	op := uint8(ioRead)
	if write {
		op = ioWrite
	}
	return sqe{opc: op, nsid: 1, prp1: prp1, prp2: prp2, cdw10: uint32(slba), cdw11: uint32(slba >> 32), cdw12: nlb - 1}
}

func (d *driver) image() []byte {
	d.t.Helper()
	b, err := os.ReadFile(d.path)
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}

package nvme

import (
	"encoding/binary"
	"os"
	"testing"
	"time"
)

// FuzzPRP resolves arbitrary data pointers over a fake RAM whose first
// list page holds the fuzzer's bytes: the walk must never panic, must end,
// and a successful one must cover exactly the transfer.
func FuzzPRP(f *testing.F) {
	f.Add(uint64(0x1000), uint64(0), uint64(512), []byte{})
	f.Add(uint64(0x1200), uint64(0x2000), uint64(0x1800), []byte{})
	f.Add(uint64(0x1000), uint64(0x8000), uint64(0x5000), binary.LittleEndian.AppendUint64(nil, 0x3000))
	f.Add(uint64(0x1004), uint64(0x8ff8), uint64(0x80000), binary.LittleEndian.AppendUint64(nil, 0x8000))
	f.Add(uint64(0xfffc), uint64(0x8000), uint64(maxTransfer), []byte{})
	f.Fuzz(func(t *testing.T, prp1, prp2, n uint64, list []byte) {
		mem := make(fakeMem, 0x10000)
		copy(mem[0x8000:], list)
		n %= maxTransfer + 2
		bufs, sc := prpBuffers(mem, prp1, prp2, n)
		if sc != scSuccess {
			if bufs != nil {
				t.Fatalf("status %#x with buffers", sc)
			}
			return
		}
		var got uint64
		for _, b := range bufs {
			got += uint64(len(b))
		}
		if got != n {
			t.Fatalf("buffers cover %d bytes of a %d-byte transfer", got, n)
		}
	})
}

// FuzzSubmission puts an arbitrary 64-byte entry on the admin queue or on
// an I/O queue: the controller must answer it (or hold it, for an AER),
// keep working, and never change the image's size.
func FuzzSubmission(f *testing.F) {
	entry := func(opc uint8, nsid uint32, prp1, prp2 uint64, cdw ...uint32) []byte {
		e := make([]byte, sqeSize)
		e[0] = opc
		binary.LittleEndian.PutUint32(e[4:], nsid)
		binary.LittleEndian.PutUint64(e[24:], prp1)
		binary.LittleEndian.PutUint64(e[32:], prp2)
		for i, v := range cdw {
			binary.LittleEndian.PutUint32(e[40+4*i:], v)
		}
		return e
	}
	f.Add(entry(adminIdentify, 0, dataAt, 0, cnsController), true)
	f.Add(entry(adminCreateCQ, 0, 0x300000, 0, 15<<16|2, 2<<16|3), true)
	f.Add(entry(adminCreateSQ, 0, 0x300000, 0, 15<<16|2, 1<<16|1), true)
	f.Add(entry(adminDeleteCQ, 0, 0, 0, 1), true)
	f.Add(entry(adminGetLogPage, 0, dataAt, dataAt+0x1000, 0x3ff<<16|logSMART), true)
	f.Add(entry(adminSetFeatures, 0, 0, 0, featNumQueues, 0xffff), true)
	f.Add(entry(adminDoorbellBufC, 0, 0x500000, 0x501000), true)
	f.Add(entry(ioRead, 1, dataAt, dataAt+0x8000, 0, 0, 63), false)
	f.Add(entry(ioWrite, 1, dataAt+4, dataAt+0x1000, 2040, 0, 7|cdw12FUA), false)
	f.Add(entry(ioWriteZeroes, 1, 0, 0, 100, 0, 0xffff), false)
	f.Add(entry(ioDSM, 1, dataAt, 0, 0xff, dsmDeallocat), false)
	f.Add(entry(ioFlush, 0xffffffff, 0, 0), false)
	f.Fuzz(func(t *testing.T, e []byte, admin bool) {
		if len(e) < sqeSize {
			e = append(e, make([]byte, sqeSize-len(e))...)
		}
		d := newDriver(t, opts{blocks: 2048})
		d.enable()
		d.createQueuePair(1, 16)
		qid := uint16(1)
		if admin {
			qid = 0
		}
		q := d.qs[qid]
		copy(d.mem[q.sqAt+uint64(q.tail)*sqeSize:], e[:sqeSize])
		q.tail = (q.tail + 1) % q.size
		d.ringSQ(qid)
		held := admin && e[0] == adminAsyncEvent
		if _, ok := d.poll(qid, time.Second); !ok && !held {
			t.Fatalf("no completion for opcode %#x", e[0])
		}
		// The command may have overwritten the driver's own queues (a read
		// into them is the guest's business): reset, and the controller
		// must come back.
		d.write32(regCC, 0)
		clear(d.mem[:dataAt])
		d.cid = 0
		d.enable()
		d.ok(0, sqe{opc: adminGetFeatures, cdw10: featArbitration})
		if fi, err := os.Stat(d.path); err != nil || fi.Size() != 2048*BlockSize {
			t.Fatalf("image size changed: %v %v", fi.Size(), err)
		}
	})
}

package nvme

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vmmdev/vmm/devices/internal/blocktest"
	"github.com/vmmdev/vmm/storage/block"
)

// gatedDriver is a driver whose image reads go through a blocktest.Gate,
// with one I/O queue pair of 16 entries.
func gatedDriver(t *testing.T) (*driver, *blocktest.Gate) {
	var g *blocktest.Gate
	d := newDriver(t, opts{wrap: func(dev block.Device) block.Device {
		g = blocktest.New(dev)
		return g
	}})
	d.enable()
	d.createQueuePair(1, 16)
	return d, g
}

// checkBlock asserts that the 512 bytes at dataAt+off hold block lba of
// the test image.
func (d *driver) checkBlock(off uint64, lba int) {
	d.t.Helper()
	got := d.mem[dataAt+off:][:BlockSize]
	if !bytes.Equal(got, bytes.Repeat([]byte{byte(lba)}, BlockSize)) {
		d.t.Fatalf("buffer at %#x: got %x..., want block %d", off, got[:8], lba)
	}
}

func TestIOQueueKeepsCommandsInFlight(t *testing.T) {
	d, g := gatedDriver(t)
	const n = 8
	// Each read waits until all n are at the device at once: a queue that
	// executed one command at a time would time them out.
	g.Barrier(n)
	cids := map[uint16]int{}
	for i := range n {
		cids[d.submit(1, rw(false, uint64(i), 1, dataAt+uint64(i)*pageSize, 0))] = i
	}
	for range n {
		c := d.wait(1)
		i, ok := cids[c.cid]
		if !ok || c.status != 0 || c.sqid != 1 {
			t.Fatalf("completion %+v: unexpected (status %#x)", c, c.status)
		}
		delete(cids, c.cid)
		d.checkBlock(uint64(i)*pageSize, i)
	}
	if got := g.MaxPending(); got < n {
		t.Fatalf("at most %d reads pending at once, want %d", got, n)
	}
}

func TestIOQueueCompletesOutOfOrder(t *testing.T) {
	d, g := gatedDriver(t)
	release := g.Hold(0)
	defer release()
	slow := d.submit(1, rw(false, 0, 1, dataAt, 0))
	fast := d.submit(1, rw(false, 5, 1, dataAt+pageSize, 0))
	first := d.wait(1)
	if first.cid != fast || first.status != 0 {
		t.Fatalf("first completion %+v, want cid %d (the read not held)", first, fast)
	}
	// Both entries were fetched before the second one finished.
	if first.sqhd != 2 {
		t.Fatalf("SQ head %d in the first completion, want 2", first.sqhd)
	}
	d.checkBlock(pageSize, 5)
	release()
	second := d.wait(1)
	if second.cid != slow || second.status != 0 || second.sqhd != 2 {
		t.Fatalf("second completion %+v, want cid %d with SQ head 2", second, slow)
	}
	d.checkBlock(0, 0)
}

func TestIOQueueFlushAfterConcurrentWrites(t *testing.T) {
	d, g := gatedDriver(t)
	for i := range 4 {
		b := d.mem[dataAt+uint64(i)*pageSize:][:BlockSize]
		for j := range b {
			b[j] = 0xa0 + byte(i)
		}
		d.submit(1, rw(true, uint64(100+i), 1, dataAt+uint64(i)*pageSize, 0))
	}
	for range 4 {
		if c := d.wait(1); c.status != 0 {
			t.Fatalf("write: status %#x", c.status)
		}
	}
	d.ok(1, sqe{opc: ioFlush, nsid: 1})
	log := g.Log()
	fi := slices.Index(log, "flush")
	for i := range 4 {
		w := slices.Index(log, fmt.Sprintf("write %d", (100+i)*BlockSize))
		if w < 0 || fi < w {
			t.Fatalf("log %q: write %d must finish before the flush starts", log, i)
		}
	}
	img := d.image()
	for i := range 4 {
		if got := img[(100+i)*BlockSize]; got != 0xa0+byte(i) {
			t.Fatalf("image block %d: %#x, want %#x", 100+i, got, 0xa0+byte(i))
		}
	}
}

func TestResetWaitsForCommandsInFlight(t *testing.T) {
	d, g := gatedDriver(t)
	release := g.Hold(0)
	defer release()
	d.submit(1, rw(false, 0, 1, dataAt, 0))
	if off, err := g.WaitArrived(); err != nil || off != 0 {
		t.Fatalf("read at the device: %d, %v", off, err)
	}
	reset := make(chan struct{})
	go func() {
		d.write32(regCC, 0)
		close(reset)
	}()
	// RDY clears when the queues are detached; the reset then waits for
	// the read, which is released only now.
	deadline := time.Now().Add(5 * time.Second)
	for d.read32(regCSTS)&cstsRDY != 0 {
		if time.Now().After(deadline) {
			t.Fatal("CSTS.RDY did not clear")
		}
		time.Sleep(100 * time.Microsecond)
	}
	select {
	case <-reset:
		t.Fatal("reset returned with a read in flight")
	default:
	}
	release()
	select {
	case <-reset:
	case <-time.After(5 * time.Second):
		t.Fatal("reset did not finish after the read was released")
	}
	// The reset returned only after the read had finished, and the
	// command's completion was dropped: the CQ is as the driver left it.
	if !slices.Contains(g.Log(), "read 0") {
		t.Fatalf("reset returned before the read in flight finished: log %q", g.Log())
	}
	cq := d.qs[1]
	if e := d.mem[cq.cqAt:][:cqeSize]; !bytes.Equal(e, make([]byte, cqeSize)) {
		t.Fatalf("completion posted after reset: % x", e)
	}
}

func TestDeleteSQWithCommandsInFlight(t *testing.T) {
	d, g := gatedDriver(t)
	release := g.Hold(0)
	d.submit(1, rw(false, 0, 1, dataAt, 0))
	if _, err := g.WaitArrived(); err != nil {
		t.Fatal(err)
	}
	// DELETE I/O SQ completes once the command in flight is done; until
	// then the admin queue waits, and the CQ may not be deleted.
	cid := d.submit(0, sqe{opc: adminDeleteSQ, cdw10: 1})
	release()
	c := d.wait(0)
	if c.cid != cid || c.status != 0 {
		t.Fatalf("delete SQ: %+v", c)
	}
	d.ok(0, sqe{opc: adminDeleteCQ, cdw10: 1})
}

package storvsc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/scsi"
	"github.com/vmmdev/vmm/devices/vmbus/internal/guestdrv"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

// sendRW sends a one-block READ(10) or WRITE(10) of lba through guest page
// pfn without waiting for it; it returns the transaction id.
func (r *rig) sendRW(ch *guestdrv.Channel, write bool, lba uint32, pfn uint64) uint64 {
	r.t.Helper()
	le := binary.LittleEndian
	req := vstor(opExecuteSRB, packetSize)
	le.PutUint16(req[hdrSize:], srbSizeWin8)
	op := byte(scsi.OpRead10)
	if write {
		op = scsi.OpWrite10
	}
	cdb := cdb10(op, lba, 1)
	req[offCDBLength] = byte(len(cdb))
	req[offSenseLength] = senseWin8
	copy(req[offCDB:], cdb)
	le.PutUint32(req[offTransferLen:], scsi.BlockSize)
	r.id++
	require.NoError(r.t, ch.SendHdr(ring.TypeDataGPADirect, ring.FlagCompletionRequest, r.id, gpaHeader(scsi.BlockSize, 0, pfn), req))
	return r.id
}

// completions reads n completions and returns their transaction ids in
// arrival order, asserting each succeeded.
func (r *rig) completions(ch *guestdrv.Channel, n int) []uint64 {
	r.t.Helper()
	var ids []uint64
	for range n {
		p := r.wait(ch)
		require.Equal(r.t, uint16(ring.TypeCompletion), p.Type)
		require.Equal(r.t, byte(srbSuccess), p.Payload[offSRBStatus], "transaction %d", p.ID)
		ids = append(ids, p.ID)
	}
	return ids
}

// checkPage asserts guest page pfn starts with block lba of LUN 0.
func (r *rig) checkPage(pfn uint64, lba int) {
	r.t.Helper()
	got := r.g.Mem[pfn*4096:][:scsi.BlockSize]
	require.True(r.t, bytes.Equal(got, bytes.Repeat([]byte{byte(lba)}, scsi.BlockSize)),
		"page %#x: %x..., want block %d", pfn, got[:8], lba)
}

func TestChannelKeepsRequestsInFlight(t *testing.T) {
	r := newRig(t, 1, disk{gated: true})
	r.initialize(Version6_2)
	const n = 8
	// Each read waits until all n are at the disk at once.
	r.gates[0].Barrier(n)
	want := map[uint64]int{}
	for i := range n {
		want[r.sendRW(r.ch, false, uint32(i+1), dataPFN+uint64(i))] = i + 1
	}
	ids := r.completions(r.ch, n)
	for i, id := range ids {
		lba, ok := want[id]
		require.True(t, ok, "completion %d: unknown transaction %d", i, id)
		delete(want, id)
		r.checkPage(dataPFN+uint64(lba-1), lba)
	}
	require.GreaterOrEqual(t, r.gates[0].MaxPending(), n)
}

func TestChannelCompletesOutOfOrder(t *testing.T) {
	r := newRig(t, 1, disk{gated: true})
	r.initialize(Version6_2)
	release := r.gates[0].Hold(3 * scsi.BlockSize)
	defer release()
	slow := r.sendRW(r.ch, false, 3, dataPFN)
	// The slow read came alone: the worker runs it itself, and the fast
	// one, which comes while it waits at the disk, runs beside it.
	_, err := r.gates[0].WaitArrived()
	require.NoError(t, err)
	require.Equal(t, uint64(1), r.ctrl.stats.alone.Load())
	fast := r.sendRW(r.ch, false, 4, dataPFN+1)
	require.Equal(t, []uint64{fast}, r.completions(r.ch, 1))
	r.checkPage(dataPFN+1, 4)
	release()
	require.Equal(t, []uint64{slow}, r.completions(r.ch, 1))
	r.checkPage(dataPFN, 3)
}

func TestAloneRequestsRunOnWorker(t *testing.T) {
	r := newRig(t, 1, disk{})
	r.initialize(Version6_2)
	const n = 5
	for i := range n {
		id := r.sendRW(r.ch, false, uint32(i+1), dataPFN)
		require.Equal(t, []uint64{id}, r.completions(r.ch, 1))
		r.checkPage(dataPFN, i+1)
	}
	// At queue depth 1 every request comes alone.
	require.Equal(t, uint64(n), r.ctrl.stats.alone.Load())
	require.Equal(t, uint64(n), r.ctrl.Stats().SRBs)
}

// A guest that signals in a loop while the worker runs a lone request
// itself starts one waiting helper, not one per signal.
func TestSignalStormStartsOneHelper(t *testing.T) {
	r := newRig(t, 1, disk{gated: true})
	r.initialize(Version6_2)
	g := r.gates[0]
	release := g.Hold(9 * scsi.BlockSize)
	defer release()
	id := r.sendRW(r.ch, false, 9, dataPFN)
	_, err := g.WaitArrived()
	require.NoError(t, err)
	r.ctrl.mu.Lock()
	require.Len(t, r.ctrl.workers, 1)
	var w *worker
	for _, w = range r.ctrl.workers {
	}
	r.ctrl.mu.Unlock()
	// Held here, the drain lock keeps a started helper waiting.
	w.drainMu.Lock()
	for range 100 {
		require.Zero(t, r.bus.Signal(r.ch.Conn)) // HvSignalEvent, as the guest's
	}
	started := r.ctrl.stats.helpers.Load()
	w.drainMu.Unlock()
	require.Equal(t, uint64(1), started)
	release()
	require.Equal(t, []uint64{id}, r.completions(r.ch, 1))
	require.Equal(t, uint64(1), r.ctrl.stats.alone.Load())
}

func TestSyncCacheAfterConcurrentWrites(t *testing.T) {
	r := newRig(t, 1, disk{gated: true})
	r.initialize(Version6_2)
	for i := range 4 {
		page := r.g.Mem[(dataPFN+uint64(i))*4096:][:scsi.BlockSize]
		for j := range page {
			page[j] = 0xb0 + byte(i)
		}
		r.sendRW(r.ch, true, uint32(100+i), dataPFN+uint64(i))
	}
	r.completions(r.ch, 4)
	res := r.exec(r.ch, srb{cdb: cdb10(scsi.OpSyncCache10, 0, 0)})
	require.Equal(t, byte(srbSuccess), res.srbStatus)
	log := r.gates[0].Log()
	fi := slices.Index(log, "flush")
	require.GreaterOrEqual(t, fi, 0, "log %q: no flush", log)
	for i := range 4 {
		w := slices.Index(log, fmt.Sprintf("write %d", (100+i)*scsi.BlockSize))
		require.True(t, w >= 0 && w < fi, "log %q: write %d must finish before the flush", log, i)
	}
}

func TestCloseWaitsForRequestsInFlight(t *testing.T) {
	r := newRig(t, 1, disk{gated: true})
	r.initialize(Version6_2)
	g := r.gates[0]
	release := g.Hold(7 * scsi.BlockSize)
	defer release()
	r.sendRW(r.ch, false, 7, dataPFN)
	off, err := g.WaitArrived()
	require.NoError(t, err)
	require.Equal(t, uint64(7*scsi.BlockSize), off)
	closed := make(chan struct{})
	go func() {
		r.ctrl.Shutdown()
		close(closed)
	}()
	// The read is released once shutdown has taken the channel away,
	// so it is waiting for the read.
	require.Eventually(t, func() bool { return r.ctrl.Stats().Channels == 0 }, 5*time.Second, time.Millisecond)
	select {
	case <-closed:
		t.Fatal("shutdown returned with a read in flight")
	default:
	}
	release()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not finish after the read was released")
	}
	// Shutdown returned only after the read in flight had finished.
	require.Contains(t, g.Log(), fmt.Sprintf("read %d", 7*scsi.BlockSize))
}

func TestResetWaitsForRequestsInFlight(t *testing.T) {
	r := newRig(t, 1, disk{gated: true})
	r.initialize(Version6_2)
	release := r.gates[0].Hold(9 * scsi.BlockSize)
	defer release()
	read := r.sendRW(r.ch, false, 9, dataPFN)
	_, err := r.gates[0].WaitArrived()
	require.NoError(t, err)
	before := r.ctrl.Stats().Packets
	r.id++
	reset := r.id
	require.NoError(t, r.ch.Send(ring.TypeDataInband, ring.FlagCompletionRequest, reset, vstor(opResetBus, packetSize)))
	// Release the read only once the controller has taken the reset.
	require.Eventually(t, func() bool { return r.ctrl.Stats().Packets > before }, 5*time.Second, time.Millisecond)
	release()
	// The reset is answered only after the request in flight.
	p := r.wait(r.ch)
	require.Equal(t, read, p.ID)
	p = r.wait(r.ch)
	require.Equal(t, reset, p.ID)
	require.Zero(t, status(p.Payload))
}

// BenchmarkReadQD1 is the host side of one 512-byte READ(10) at queue
// depth 1, as the bench's random reads are: the guest driver writes the
// request, the worker runs it, the guest polls for the completion.
func BenchmarkReadQD1(b *testing.B) {
	r := newRig(b, 1, disk{})
	r.initialize(Version6_2)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r.sendRW(r.ch, false, uint32(i%100+1), dataPFN)
		for {
			if _, ok := r.ch.In.Read(); ok {
				break
			}
			// Let the worker run where the benchmark has one P.
			runtime.Gosched()
		}
	}
}

package ahci

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// awaitMSIs waits for n messages without touching a register: a completion
// must interrupt by itself, not when the guest next reads or writes the
// HBA (a halted vCPU would never do so, or only at its next timer tick).
func (d *driver) awaitMSIs(n int) {
	d.t.Helper()
	timeout := time.After(5 * time.Second)
	for i := range n {
		select {
		case <-d.msi.ch:
		case <-timeout:
			d.t.Fatalf("%d of %d interrupts", i, n)
		}
	}
}

// drainMSIs forgets the messages sent so far (port start-up).
func (d *driver) drainMSIs() {
	for {
		select {
		case <-d.msi.ch:
		default:
			return
		}
	}
}

// What Linux's interrupt handler does: IS, PxIS, clear PxIS, then IS.
func (d *driver) handleIRQ(port int) (is, pxis uint32) {
	is = d.rd(regIS)
	pxis = d.prd(port, pxIS)
	d.pwr(port, pxIS, pxis)
	d.wr(regIS, is)
	return is, pxis
}

func TestCompletionInterruptsDMA(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20, fill: pattern})
	d.start(0)
	d.drainMSIs()
	for slot := range 3 {
		d.place(0, slot, cmd{fis: ata(ataReadDMAExt, uint64(slot), 1, 0, 0x40), prds: []prdEnt{{dataAt, 512}}})
		d.pwr(0, pxCI, 1<<slot)
		d.awaitMSIs(1)
		assert.Zero(t, d.prd(0, pxCI), "slot %d done when it interrupts", slot)
		is, pxis := d.handleIRQ(0)
		assert.Equal(t, uint32(1), is, "IS.IPS of port 0")
		assert.Equal(t, uint32(isDHRS), pxis)
		assert.Equal(t, pattern(slot*512), d.data(1)[0])
		assert.Zero(t, d.rd(regIS), "nothing pending once handled")
	}
}

func TestCompletionInterruptsLoneNCQTag(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20, fill: pattern})
	d.start(0)
	d.drainMSIs()
	// Queue depth 1, as a random-read benchmark: each tag alone on the port.
	for i := range 4 {
		tag := i * 9 % 32
		d.ncqRead(0, tag, uint64(tag+3))
		d.pwr(0, pxSACT, 1<<tag)
		d.pwr(0, pxCI, 1<<tag)
		d.awaitMSIs(1)
		assert.Zero(t, d.prd(0, pxSACT), "tag %d done when it interrupts", tag)
		assert.Equal(t, uint32(1)<<tag, uint32(d.sdb(0)[4])|uint32(d.sdb(0)[5])<<8|uint32(d.sdb(0)[6])<<16|uint32(d.sdb(0)[7])<<24,
			"SDB FIS names tag %d", tag)
		is, pxis := d.handleIRQ(0)
		assert.Equal(t, uint32(1), is)
		assert.Equal(t, uint32(isSDBS), pxis)
		assert.Equal(t, pattern((tag+3)*512), d.dataAt(dataAt+tag*0x1000, 1)[0])
	}
}

func TestCompletionInterruptsEveryNCQTag(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20, fill: pattern, gated: true})
	d.start(0)
	d.drainMSIs()
	const n = 6
	// All n reach the disk before any completes, then each completion is
	// a new event and sends its own message, though PxIS.SDBS is still
	// set from the one before (nobody cleared it).
	d.gates[0].Barrier(n)
	var all uint32
	for tag := range n {
		d.ncqRead(0, tag, uint64(tag+20))
		all |= 1 << tag
	}
	d.pwr(0, pxSACT, all)
	d.pwr(0, pxCI, all)
	d.awaitMSIs(n)
	assert.Zero(t, d.prd(0, pxSACT))
	_, pxis := d.handleIRQ(0)
	assert.Equal(t, uint32(isSDBS), pxis)
	for tag := range n {
		assert.Equal(t, pattern((tag+20)*512), d.dataAt(dataAt+tag*0x1000, 1)[0], "tag %d", tag)
	}
	// A completion between the handler's PxIS clear and its IS write
	// interrupts again: the edge is not lost.
	d.gates[0].Barrier(1)
	d.ncqRead(0, 7, 1)
	d.pwr(0, pxSACT, 1<<7)
	d.pwr(0, pxCI, 1<<7)
	d.awaitMSIs(1)
	is := d.rd(regIS)
	require.Equal(t, uint32(1), is)
	d.pwr(0, pxIS, d.prd(0, pxIS))
	d.ncqRead(0, 8, 2)
	d.pwr(0, pxSACT, 1<<8)
	d.pwr(0, pxCI, 1<<8)
	d.awaitMSIs(1)
	d.wr(regIS, is)
	assert.Equal(t, uint32(1), d.rd(regIS), "the second completion still pending after the first's IS write")
}

func TestKickerMergesAndCloses(t *testing.T) {
	k, err := newKicker()
	require.NoError(t, err)
	// A kick before the wait is not lost.
	k.kick()
	require.True(t, k.wait())
	woke := make(chan bool)
	go func() { woke <- k.wait() }()
	k.kick()
	assert.True(t, <-woke)
	// Close ends a wait in progress; a kick after it is harmless.
	go func() { woke <- k.wait() }()
	k.close()
	assert.False(t, <-woke)
	k.kick()
}

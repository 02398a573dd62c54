package ahci

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ncqRead places READ FPDMA QUEUED of one sector at lba in tag (and slot)
// tag, into its own page.
func (d *driver) ncqRead(port, tag int, lba uint64) {
	d.place(port, tag, cmd{fis: ata(ataReadFPDMA, lba, uint16(tag<<3), 1, 0x40),
		prds: []prdEnt{{uint64(dataAt + tag*0x1000), 512}}})
}

// until polls cond for up to 5 s.
func (d *driver) until(what string, cond func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			d.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func TestNCQCommandsInFlightTogether(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20, fill: pattern, gated: true})
	d.start(0)
	const n = 8
	// Each read waits until all n are at the disk at once.
	d.gates[0].Barrier(n)
	for tag := range n {
		d.ncqRead(0, tag, uint64(tag+10))
	}
	d.pwr(0, pxSACT, 1<<n-1)
	d.pwr(0, pxCI, 1<<n-1)
	is := d.wait(0, func() bool { return d.prd(0, pxSACT) == 0 })
	assert.Zero(t, is&isTFES)
	assert.GreaterOrEqual(t, d.gates[0].MaxPending(), n)
	for tag := range n {
		assert.Equal(t, pattern((tag+10)*512), d.dataAt(dataAt+tag*0x1000, 1)[0], "tag %d", tag)
	}
}

func TestNCQCompletesOutOfOrder(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20, fill: pattern, gated: true})
	d.start(0)
	release := d.gates[0].Hold(3 * 512)
	defer release()
	d.ncqRead(0, 0, 3)
	d.ncqRead(0, 1, 4)
	d.pwr(0, pxSACT, 3)
	d.pwr(0, pxCI, 3)
	// Tag 1 finishes while tag 0 is still at the disk.
	is := d.wait(0, func() bool { return d.prd(0, pxSACT) == 1 })
	assert.NotZero(t, is&isSDBS)
	assert.Equal(t, pattern(4*512), d.dataAt(dataAt+0x1000, 1)[0])
	release()
	is = d.wait(0, func() bool { return d.prd(0, pxSACT) == 0 })
	assert.Zero(t, is&isTFES)
	assert.Equal(t, pattern(3*512), d.dataAt(dataAt, 1)[0])
}

func TestNCQFlushAfterWrites(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20, gated: true})
	d.start(0)
	for tag := range 4 {
		at := dataAt + tag*0x1000
		buf := d.dataAt(at, 512)
		for i := range buf {
			buf[i] = 0xc0 + byte(tag)
		}
		d.place(0, tag, cmd{fis: ata(ataWriteFPDMA, uint64(50+tag), uint16(tag<<3), 1, 0x40),
			prds: []prdEnt{{uint64(at), 512}}, write: true})
	}
	d.pwr(0, pxSACT, 0xf)
	d.pwr(0, pxCI, 0xf)
	d.wait(0, func() bool { return d.prd(0, pxSACT) == 0 })
	is := d.issue(0, 5, cmd{fis: ata(ataFlushCacheExt, 0, 0, 0, 0)})
	assert.Zero(t, is&isTFES)
	log := d.gates[0].Log()
	fi := slices.Index(log, "flush")
	require.GreaterOrEqual(t, fi, 0, "log %q", log)
	for tag := range 4 {
		w := slices.Index(log, fmt.Sprintf("write %d", (50+tag)*512))
		assert.True(t, w >= 0 && w < fi, "log %q: write %d before the flush", log, tag)
	}
}

func TestStopWaitsForNCQInFlight(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20, fill: pattern, gated: true})
	d.start(0)
	g := d.gates[0]
	release := g.Hold(5 * 512)
	defer release()
	d.ncqRead(0, 0, 5)
	d.pwr(0, pxSACT, 1)
	d.pwr(0, pxCI, 1)
	_, err := g.WaitArrived()
	require.NoError(t, err)
	d.pwr(0, pxIS, 0xffffffff)
	// Clearing ST drops the command; CR stays set while it still runs.
	d.pwr(0, pxCMD, cmdFRE|cmdSUD|cmdPOD)
	assert.NotZero(t, d.prd(0, pxCMD)&cmdCR, "CR cleared with a read in flight")
	assert.Zero(t, d.prd(0, pxSACT))
	release()
	d.until("CR to clear", func() bool { return d.prd(0, pxCMD)&cmdCR == 0 })
	assert.Contains(t, g.Log(), "read 2560", "CR cleared before the read finished")
	// The dropped command completes nothing.
	assert.Zero(t, d.prd(0, pxIS)&isSDBS)
	assert.Zero(t, d.prd(0, pxSACT))
}

func TestHBAResetWaitsForCommandsInFlight(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20, fill: pattern, gated: true})
	d.start(0)
	g := d.gates[0]
	release := g.Hold(6 * 512)
	defer release()
	d.ncqRead(0, 0, 6)
	d.pwr(0, pxSACT, 1)
	d.pwr(0, pxCI, 1)
	_, err := g.WaitArrived()
	require.NoError(t, err)
	d.wr(regGHC, ghcHR)
	assert.NotZero(t, d.rd(regGHC)&ghcHR, "HR cleared with a read in flight")
	release()
	d.until("HR to clear", func() bool { return d.rd(regGHC)&ghcHR == 0 })
	assert.Contains(t, g.Log(), "read 3072")
	assert.Zero(t, d.prd(0, pxCMD)&(cmdST|cmdCR))
	assert.Zero(t, d.prd(0, pxSACT)|d.prd(0, pxCI))
}

// A tag issued alone runs on the port's goroutine; one issued while it is
// at the disk waits for it, then both complete.
func TestNCQAloneThenAnother(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20, fill: pattern, gated: true})
	d.start(0)
	g := d.gates[0]
	release := g.Hold(3 * 512)
	d.ncqRead(0, 0, 3)
	d.pwr(0, pxSACT, 1)
	d.pwr(0, pxCI, 1)
	off, err := g.WaitArrived()
	require.NoError(t, err)
	require.Equal(t, uint64(3*512), off)
	d.ncqRead(0, 1, 4)
	d.pwr(0, pxSACT, 2)
	d.pwr(0, pxCI, 2)
	assert.Equal(t, uint32(3), d.prd(0, pxSACT), "both tags outstanding")
	release()
	is := d.wait(0, func() bool { return d.prd(0, pxSACT) == 0 })
	assert.Zero(t, is&isTFES)
	assert.Equal(t, pattern(3*512), d.dataAt(dataAt, 1)[0])
	assert.Equal(t, pattern(4*512), d.dataAt(dataAt+0x1000, 1)[0])
}

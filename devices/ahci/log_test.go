package ahci

import (
	"encoding/binary"
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readLog builds READ LOG EXT (or, dma, READ LOG DMA EXT) of pages pages
// of log from page.
func readLog(dma bool, log byte, page uint16, pages uint16) cmd {
	c := byte(ataReadLogExt)
	if dma {
		c = ataReadLogDMAExt
	}
	lba := uint64(log) | uint64(page&0xff)<<8 | uint64(page>>8)<<32
	return cmd{fis: ata(c, lba, pages, 0, 0x40), prds: []prdEnt{{logAt, 1024}}}
}

// logAt is where readLog's data goes, clear of ncqRead's pages.
const logAt = dataAt + 0x40000

func (d *driver) logData(n int) []byte { return d.dataAt(logAt, n) }

func allZero(b []byte) bool { return !slices.ContainsFunc(b, func(v byte) bool { return v != 0 }) }

func sum(b []byte) byte {
	var s byte
	for _, v := range b {
		s += v
	}
	return s
}

func TestReadLog(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20})
	d.start(0)
	for _, dma := range []bool{false, true} {
		clear(d.logData(1024))
		is := d.issue(0, 0, readLog(dma, logDirectory, 0, 1))
		want := uint32(isDHRS)
		if !dma {
			want |= isPSS // PIO data-in
		}
		require.Equal(t, want, is, "dma %v", dma)
		assert.Equal(t, uint32(512), d.prdbc(0, 0))
		dir := d.logData(512)
		for l := range 256 {
			w := binary.LittleEndian.Uint16(dir[2*l:])
			switch l {
			case 0:
				assert.Equal(t, uint16(1), w, "GPL version")
			case logNCQError:
				assert.Equal(t, uint16(1), w, "log 10h: one page")
			default:
				assert.Zero(t, w, "log %#x absent", l)
			}
		}
		assert.True(t, allZero(d.logData(1024)[512:]), "one page only")

		// No queued command failed: NQ set, registers empty, checksum.
		is = d.issue(0, 0, readLog(dma, logNCQError, 0, 1))
		require.Equal(t, want, is)
		page := d.logData(512)
		assert.Equal(t, byte(ncqErrNQ), page[0])
		assert.True(t, allZero(page[1:511]))
		assert.Zero(t, sum(page))
	}

	// Absent logs, count 0, pages past the end: ABRT.
	for _, c := range []cmd{
		readLog(false, 0x30, 0, 1), readLog(true, 0x11, 0, 1), readLog(false, 0xff, 0, 1),
		readLog(false, logDirectory, 0, 0), readLog(true, logNCQError, 0, 0),
		readLog(false, logDirectory, 1, 1), readLog(false, logNCQError, 0x100, 1),
		readLog(true, logDirectory, 0, 2), readLog(false, logNCQError, 0xffff, 0xffff),
	} {
		d.restart(0)
		is := d.issue(0, 0, c)
		assert.Equal(t, uint32(isTFES|isDHRS), is, "fis %x", c.fis[:14])
		assert.Equal(t, []byte{statOK | statERR, errABRT}, d.d2h(0)[2:4])
	}
	// The port works again after recovery.
	d.restart(0)
	assert.Equal(t, uint32(isDHRS), d.issue(0, 0, readLog(true, logDirectory, 0, 1)))
}

// TestNCQErrorRecovery is a queued write to a read-only disk while reads
// are in flight, and the recovery of libata's error handling: the port
// halts with TFES and keeps PxSACT, the device sends nothing for the
// other tags, aborts everything but READ LOG of 10h, whose page names the
// failed tag, and after it the other tags run again.
func TestNCQErrorRecovery(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20, fill: pattern, readOnly: true, gated: true})
	g := d.gates[0]
	d.start(0)
	const heldTag, badTag = 1, 5
	release := g.Hold(uint64(10+heldTag) * 512)
	defer release()
	for tag := range 3 {
		d.ncqRead(0, tag, uint64(10+tag))
	}
	d.pwr(0, pxSACT, 7)
	d.pwr(0, pxCI, 7)
	for {
		off, err := g.WaitArrived()
		require.NoError(t, err)
		if off == (10+heldTag)*512 {
			break
		}
	}
	// The write: 8 sectors at LBA 0x123, FUA, which fails at once.
	d.place(0, badTag, cmd{fis: ata(ataWriteFPDMA, 0x123, badTag<<3, 8, 0xc0),
		prds: []prdEnt{{dataAt + 0x10000, 4096}}, write: true})
	d.pwr(0, pxSACT, 1<<badTag)
	d.pwr(0, pxCI, 1<<badTag)
	is := d.wait(0, func() bool { return false })
	require.NotZero(t, is&isTFES, "IS %#x", is)
	assert.Equal(t, uint32(errWP)<<8|(statOK|statERR)&0x77, d.prd(0, pxTFD))
	sdb := slices.Clone(d.sdb(0))
	assert.Equal(t, []byte{fisSDB, fisI, (statOK | statERR) & 0x77, errWP, 0, 0, 0, 0}, sdb, "SDB: ERR, no tag done")
	outstanding := d.prd(0, pxSACT)
	assert.Equal(t, uint32(1<<heldTag|1<<badTag), outstanding&(1<<heldTag|1<<badTag), "SACT kept")
	assert.Zero(t, d.prd(0, pxCI))

	// The held read finishes after the error: the device reports nothing.
	release()
	d.until("the held read", func() bool {
		d.h.mu.Lock()
		defer d.h.mu.Unlock()
		return d.h.ports[0].active == 0
	})
	assert.Equal(t, outstanding, d.prd(0, pxSACT), "no completion after the error")
	assert.Equal(t, sdb, slices.Clone(d.sdb(0)))

	// Recovery: ST off and on; anything but READ LOG of 10h aborts.
	d.restart(0)
	assert.Zero(t, d.prd(0, pxSACT), "ST off drops the queue")
	is = d.issue(0, 0, cmd{fis: ata(ataIdentify, 0, 0, 0, 0), prds: []prdEnt{{dataAt, 512}}})
	assert.Equal(t, uint32(isTFES|isDHRS), is, "IDENTIFY before the log is read")
	d.restart(0)
	is = d.issue(0, 0, readLog(false, logDirectory, 0, 1))
	assert.Equal(t, uint32(isTFES|isDHRS), is, "another log before 10h")
	d.restart(0)
	d.ncqRead(0, 0, 10)
	d.pwr(0, pxSACT, 1)
	d.pwr(0, pxCI, 1)
	is = d.wait(0, func() bool { return false })
	assert.NotZero(t, is&isTFES, "a queued command before the log is read")
	d.restart(0)

	clear(d.logData(512))
	is = d.issue(0, 0, readLog(false, logNCQError, 0, 1))
	require.Equal(t, uint32(isDHRS|isPSS), is)
	page := d.logData(512)
	assert.Equal(t, byte(badTag), page[0], "NQ clear, the failed tag")
	assert.Equal(t, []byte{statOK | statERR, errWP}, page[2:4], "status, error")
	assert.Equal(t, []byte{0x23, 0x01, 0, 0xc0, 0, 0, 0}, page[4:11], "LBA and device")
	assert.Equal(t, []byte{8, 0}, page[12:14], "count")
	assert.True(t, allZero(page[14:511]))
	assert.Zero(t, sum(page), "checksum")
	// Read, the error is gone.
	is = d.issue(0, 0, readLog(true, logNCQError, 0, 1))
	require.Equal(t, uint32(isDHRS), is)
	assert.Equal(t, byte(ncqErrNQ), d.logData(1)[0])

	// The host issues the aborted reads again; they complete.
	again := outstanding &^ (1 << badTag)
	for tag := range 3 {
		if again&(1<<tag) != 0 {
			clear(d.dataAt(dataAt+tag*0x1000, 512))
			d.ncqRead(0, tag, uint64(10+tag))
		}
	}
	d.pwr(0, pxSACT, again)
	d.pwr(0, pxCI, again)
	is = d.wait(0, func() bool { return d.prd(0, pxSACT) == 0 })
	assert.Zero(t, is&isTFES)
	for tag := range 3 {
		assert.Equal(t, pattern((10+tag)*512), d.dataAt(dataAt+tag*0x1000, 1)[0], "tag %d", tag)
	}
	file, err := os.ReadFile(d.paths[0])
	require.NoError(t, err)
	for i := range 8 * 512 {
		if file[0x123*512+i] != pattern(0x123*512+i) {
			t.Fatalf("the read-only image changed at byte %d", 0x123*512+i)
		}
	}
}

// TestResetEndsNCQError: a COMRESET also ends a queued command's error.
func TestResetEndsNCQError(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20, readOnly: true})
	d.start(0)
	d.place(0, 3, cmd{fis: ata(ataWriteFPDMA, 0, 3<<3, 1, 0x40), prds: []prdEnt{{dataAt, 512}}, write: true})
	d.pwr(0, pxSACT, 1<<3)
	d.pwr(0, pxCI, 1<<3)
	is := d.wait(0, func() bool { return false })
	require.NotZero(t, is&isTFES)
	d.pwr(0, pxCMD, cmdFRE|cmdSUD|cmdPOD)
	d.pwr(0, pxSCTL, 1)
	d.pwr(0, pxSCTL, 0)
	d.pwr(0, pxIS, 0xffffffff)
	d.pwr(0, pxCMD, cmdFRE|cmdSUD|cmdPOD|cmdST)
	is = d.issue(0, 0, cmd{fis: ata(ataIdentify, 0, 0, 0, 0), prds: []prdEnt{{dataAt, 512}}})
	assert.Equal(t, uint32(isDHRS|isPSS), is)
	is = d.issue(0, 0, readLog(false, logNCQError, 0, 1))
	require.Equal(t, uint32(isDHRS|isPSS), is)
	assert.Equal(t, byte(ncqErrNQ), d.logData(1)[0])
}

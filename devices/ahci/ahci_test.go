package ahci

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmmdev/vmm/internal/testenv"
)

func pattern(i int) byte { return byte(i*7 + i>>9) }

func TestPCIIdentityAndRegisters(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20}, spec{cdrom: true, size: 4 * cdBlock}, spec{})
	id := make([]byte, 12)
	d.h.fn.ReadConfig(0, id)
	assert.Equal(t, uint32(0x29228086), binary.LittleEndian.Uint32(id))
	assert.Equal(t, uint32(ClassCode), binary.LittleEndian.Uint32(id[8:])>>8)

	c := d.rd(regCAP)
	assert.Equal(t, uint32(NumPorts-1), c&0x1f, "NP")
	assert.Equal(t, uint32(31), c>>8&0x1f, "NCS")
	assert.NotZero(t, c&capSNCQ)
	assert.NotZero(t, c&capS64A)
	assert.NotZero(t, c&capSAM)
	assert.Equal(t, uint32(0x3f), d.rd(regPI))
	assert.Equal(t, uint32(Version), d.rd(regVS))
	assert.Equal(t, uint32(ghcAE), d.rd(regGHC))
	assert.Zero(t, d.rd(regCAP2))
	assert.Zero(t, d.rd(regBOHC))

	assert.Equal(t, uint32(sigDisk), d.prd(0, pxSIG))
	assert.Equal(t, uint32(sstsUp), d.prd(0, pxSSTS))
	assert.Equal(t, uint32(statOK), d.prd(0, pxTFD))
	assert.Equal(t, uint32(sigATAPI), d.prd(1, pxSIG))
	assert.Equal(t, uint32(sstsUp), d.prd(1, pxSSTS))
	assert.Zero(t, d.prd(2, pxSSTS), "empty port")
	assert.Zero(t, d.prd(5, pxSSTS), "port without a drive")

	// Alignment of CLB and FB; CR and FR follow ST and FRE.
	d.pwr(0, pxCLB, 0x12345)
	assert.Equal(t, uint32(0x12000), d.prd(0, pxCLB))
	d.pwr(0, pxFB, 0x123ff)
	assert.Equal(t, uint32(0x12300), d.prd(0, pxFB))
	d.start(0)
	assert.Equal(t, uint32(cmdST|cmdCR|cmdFRE|cmdFR), d.prd(0, pxCMD)&(cmdST|cmdCR|cmdFRE|cmdFR))

	// COMRESET through SCTL.DET: link down, then up with a signature FIS.
	clear(d.d2h(1))
	d.start(1)
	d.pwr(1, pxSCTL, 1)
	assert.Equal(t, uint32(1), d.prd(1, pxSSTS)&0xf)
	d.pwr(1, pxSCTL, 0)
	assert.Equal(t, uint32(sstsUp), d.prd(1, pxSSTS))
	assert.Equal(t, uint32(sigATAPI), d.prd(1, pxSIG))
	f := d.d2h(1)
	assert.Equal(t, []byte{fisD2H, 0, statOK, 0, 1, 0x14, 0xeb}, f[:7], "signature FIS")

	// HBA reset: everything stopped, IE off, AE still on.
	d.wr(regGHC, ghcHR)
	assert.Equal(t, uint32(ghcAE), d.rd(regGHC))
	assert.Zero(t, d.prd(0, pxCMD))
	assert.Zero(t, d.prd(0, pxCLB))
	assert.Equal(t, uint32(sigDisk), d.prd(0, pxSIG))
}

func TestIdentifyDevice(t *testing.T) {
	d := newDriver(t, spec{size: 3 << 20, serial: "AHCI-SN-1"})
	d.start(0)
	is := d.issue(0, 0, cmd{fis: ata(ataIdentify, 0, 0, 0, 0), prds: []prdEnt{{dataAt, 512}}})
	assert.Equal(t, uint32(isDHRS|isPSS), is)
	assert.Equal(t, uint32(512), d.prdbc(0, 0))
	assert.Equal(t, byte(fisPIOSet), d.pio(0)[0])
	assert.Equal(t, byte(0x58), d.pio(0)[2], "PIO Setup status: DRQ, never BSY")
	assert.Equal(t, byte(statOK), d.pio(0)[15], "ending status")
	assert.Equal(t, uint16(512), binary.LittleEndian.Uint16(d.pio(0)[16:]))
	assert.Equal(t, []byte{fisD2H, fisI, statOK, 0}, d.d2h(0)[:4])
	assert.Equal(t, uint32(statOK), d.prd(0, pxTFD))

	b := d.data(512)
	var sum byte
	for _, v := range b {
		sum += v
	}
	assert.Zero(t, sum, "checksum")
	assert.Equal(t, byte(0xa5), b[510])
	w := func(i int) uint16 { return binary.LittleEndian.Uint16(b[2*i:]) }
	str := func(from, to int) string {
		var s []byte
		for i := from; i < to; i++ {
			s = append(s, byte(w(i)>>8), byte(w(i)))
		}
		return strings.TrimRight(string(s), " ")
	}
	assert.Equal(t, "AHCI-SN-1", str(10, 20))
	assert.Equal(t, diskModel, str(27, 47))
	sectors := uint64(3 << 20 / 512)
	assert.Equal(t, sectors, uint64(w(100))|uint64(w(101))<<16|uint64(w(102))<<32)
	assert.Equal(t, sectors, uint64(w(60))|uint64(w(61))<<16)
	assert.NotZero(t, w(83)&(1<<10), "LBA48")
	assert.NotZero(t, w(83)&(1<<13), "FLUSH CACHE EXT")
	assert.NotZero(t, w(76)&(1<<8), "NCQ")
	assert.Equal(t, uint16(31), w(75))
	assert.NotZero(t, w(85)&(1<<5), "write cache on")
	for _, i := range []int{84, 87} {
		assert.NotZero(t, w(i)&(1<<5), "GPL in word %d", i)
	}
	assert.NotZero(t, w(86)&(1<<15), "words 119-120 valid")
	for _, i := range []int{119, 120} {
		assert.Equal(t, uint16(1<<14|1<<3), w(i), "word %d: READ LOG DMA EXT only", i)
	}
	assert.Zero(t, w(77)&(1<<5|1<<6), "no NCQ send/receive or non-data: their logs are absent")
	assert.Zero(t, w(76)&(1<<12), "no NCQ priority: no SATA settings page")
	assert.Zero(t, w(78)&(1<<8), "no DEVSLP")
	assert.Equal(t, uint16(0x01f0), w(80), "major version 8: Linux does not expect log 30h")
	assert.Zero(t, w(82)&(1<<0|1<<1|1<<10), "no SMART, security, HPA")
	assert.Equal(t, d.imgs[0].CanPunchHoles(), w(169)&1 != 0, "TRIM only where holes can be punched")

	// Write cache off through SET FEATURES shows in word 85.
	d.issue(0, 1, cmd{fis: ata(ataSetFeatures, 0, 0, 0x82, 0)})
	d.issue(0, 2, cmd{fis: ata(ataIdentify, 0, 0, 0, 0), prds: []prdEnt{{dataAt, 512}}})
	assert.Zero(t, w(85)&(1<<5), "write cache off")
	// UDMA mode 2 selected.
	d.issue(0, 3, cmd{fis: ata(ataSetFeatures, 0, 0x42, 0x03, 0)})
	d.issue(0, 4, cmd{fis: ata(ataIdentify, 0, 0, 0, 0), prds: []prdEnt{{dataAt, 512}}})
	assert.Equal(t, uint16(0x043f), w(88))
}

func TestWrongIdentifyAbortsUntilRestart(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20}, spec{cdrom: true, size: 8 * cdBlock})
	d.start(0)
	d.start(1)
	// SeaBIOS probes with IDENTIFY PACKET DEVICE first.
	is := d.issue(0, 0, cmd{fis: ata(ataIdentifyPacket, 0, 0, 0, 0), prds: []prdEnt{{dataAt, 512}}})
	assert.Equal(t, uint32(isTFES|isDHRS), is)
	assert.Equal(t, uint32(errABRT)<<8|statOK|statERR, d.prd(0, pxTFD))
	assert.Equal(t, uint32(1), d.prd(0, pxCI), "the failed slot stays issued")
	// Nothing runs until ST is cycled.
	d.place(0, 1, cmd{fis: ata(ataIdentify, 0, 0, 0, 0), prds: []prdEnt{{dataAt, 512}}})
	d.pwr(0, pxCI, 2)
	assert.Equal(t, uint32(3), d.prd(0, pxCI))
	d.restart(0)
	assert.Zero(t, d.prd(0, pxCI))
	is = d.issue(0, 1, cmd{fis: ata(ataIdentify, 0, 0, 0, 0), prds: []prdEnt{{dataAt, 512}}})
	assert.Equal(t, uint32(isDHRS|isPSS), is)

	// IDENTIFY DEVICE to the ATAPI drive aborts with its signature.
	is = d.issue(1, 0, cmd{fis: ata(ataIdentify, 0, 0, 0, 0), prds: []prdEnt{{dataAt, 512}}})
	assert.Equal(t, uint32(isTFES|isDHRS), is)
	assert.Equal(t, []byte{1, 0x14, 0xeb}, d.d2h(1)[4:7])
	d.restart(1)
	is = d.issue(1, 0, cmd{fis: ata(ataIdentifyPacket, 0, 0, 0, 0), prds: []prdEnt{{dataAt, 512}}})
	assert.Equal(t, uint32(isDHRS|isPSS), is)
	assert.Equal(t, uint16(0x85c0), binary.LittleEndian.Uint16(d.data(2)))

	// Unknown and unadvertised commands abort.
	for _, c := range []byte{ataNOP, 0x3f, 0xb0, 0xf8, 0x2a} {
		d.restart(0)
		is := d.issue(0, 0, cmd{fis: ata(c, 0, 1, 0, 0), prds: []prdEnt{{dataAt, 512}}})
		assert.Equal(t, uint32(isTFES|isDHRS), is, "command %#x", c)
		assert.Equal(t, byte(errABRT), d.d2h(0)[3])
	}
}

func TestReadWriteDMA(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20, fill: pattern})
	d.start(0)
	// Read 16 sectors at LBA 3 through three PRDs of uneven sizes.
	is := d.issue(0, 0, cmd{fis: ata(ataReadDMAExt, 3, 16, 0, 0x40),
		prds: []prdEnt{{dataAt, 1024}, {dataAt + 0x10000, 4096}, {dataAt + 0x20000, 8192}}})
	require.Equal(t, uint32(isDHRS), is)
	assert.Equal(t, uint32(16*512), d.prdbc(0, 0))
	want := make([]byte, 16*512)
	for i := range want {
		want[i] = pattern(3*512 + i)
	}
	got := append(append(append([]byte{}, d.dataAt(dataAt, 1024)...), d.dataAt(dataAt+0x10000, 4096)...),
		d.dataAt(dataAt+0x20000, 3072)...)
	assert.Equal(t, want, got)

	// Write 8 sectors at LBA 100, flush, and find them in the file.
	src := d.dataAt(dataAt+0x40000, 4096)
	for i := range src {
		src[i] = byte(0xc0 ^ i)
	}
	is = d.issue(0, 1, cmd{fis: ata(ataWriteDMAExt, 100, 8, 0, 0x40), write: true,
		prds: []prdEnt{{dataAt + 0x40000, 4096}}})
	require.Equal(t, uint32(isDHRS), is)
	is = d.issue(0, 2, cmd{fis: ata(ataFlushCacheExt, 0, 0, 0, 0)})
	require.Equal(t, uint32(isDHRS), is)
	file, err := os.ReadFile(d.paths[0])
	require.NoError(t, err)
	assert.Equal(t, src, file[100*512:108*512])

	// 28-bit READ DMA: the device register's low nibble is LBA 27:24.
	is = d.issue(0, 3, cmd{fis: ata(ataReadDMA, 100, 1, 0, 0x40), prds: []prdEnt{{dataAt, 512}}})
	require.Equal(t, uint32(isDHRS), is)
	assert.Equal(t, src[:512], d.dataAt(dataAt, 512))

	// Beyond the end: IDNF.
	is = d.issue(0, 4, cmd{fis: ata(ataReadDMAExt, 2047, 2, 0, 0x40), prds: []prdEnt{{dataAt, 1024}}})
	assert.Equal(t, uint32(isTFES|isDHRS), is)
	assert.Equal(t, byte(errIDNF), d.d2h(0)[3])
	d.restart(0)
	// A PRDT too short for the transfer aborts.
	is = d.issue(0, 0, cmd{fis: ata(ataReadDMAExt, 0, 4, 0, 0x40), prds: []prdEnt{{dataAt, 1024}}})
	assert.Equal(t, uint32(isTFES|isDHRS), is)
}

func TestNCQ(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20, fill: pattern})
	d.start(0)
	before := d.msi.count()
	// 32 tags: even ones write 1 sector at LBA 200+tag, odd ones read LBA tag.
	var all uint32
	for tag := range 32 {
		at := uint64(dataAt + tag*0x1000)
		c := cmd{prds: []prdEnt{{at, 512}}}
		if tag%2 == 0 {
			buf := d.dataAt(int(at), 512)
			for i := range buf {
				buf[i] = byte(tag)
			}
			c.fis, c.write = ata(ataWriteFPDMA, uint64(200+tag), uint16(tag<<3), 1, 0x40), true
		} else {
			c.fis = ata(ataReadFPDMA, uint64(tag), uint16(tag<<3), 1, 0x40)
		}
		d.place(0, tag, c)
		all |= 1 << tag
	}
	d.pwr(0, pxSACT, all)
	d.pwr(0, pxCI, all)
	var is uint32
	d.wait(0, func() bool {
		is |= d.prd(0, pxIS)
		return d.prd(0, pxSACT) == 0
	})
	assert.Zero(t, d.prd(0, pxCI))
	assert.NotZero(t, is&isSDBS)
	assert.Zero(t, is&isTFES)
	assert.Greater(t, d.msi.count(), before, "completions interrupt")
	assert.Equal(t, byte(fisSDB), d.sdb(0)[0])
	for tag := 1; tag < 32; tag += 2 {
		assert.Equal(t, pattern(tag*512), d.dataAt(dataAt+tag*0x1000, 1)[0], "tag %d", tag)
	}
	file, err := os.ReadFile(d.paths[0])
	require.NoError(t, err)
	for tag := 0; tag < 32; tag += 2 {
		assert.Equal(t, bytes.Repeat([]byte{byte(tag)}, 512), file[(200+tag)*512:(201+tag)*512])
	}
	// A bad LBA fails its tag with an SDB FIS carrying ERR.
	d.place(0, 5, cmd{fis: ata(ataReadFPDMA, 1<<40, 5<<3, 1, 0x40), prds: []prdEnt{{dataAt, 512}}})
	d.pwr(0, pxSACT, 1<<5)
	d.pwr(0, pxCI, 1<<5)
	is = d.wait(0, func() bool { return false })
	assert.NotZero(t, is&isTFES)
	assert.Equal(t, uint32(1<<5), d.prd(0, pxSACT))
	d.restart(0)
	assert.Zero(t, d.prd(0, pxSACT))
}

func TestTrim(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20, fill: func(int) byte { return 0xee }})
	if !d.imgs[0].CanPunchHoles() {
		testenv.Skip(t, "the temporary directory's filesystem cannot punch holes")
	}
	d.start(0)
	r := d.dataAt(dataAt, 512)
	clear(r)
	binary.LittleEndian.PutUint64(r, 16|8<<48)
	binary.LittleEndian.PutUint64(r[8:], 1024|16<<48)
	is := d.issue(0, 0, cmd{fis: ata(ataDSM, 0, 1, 1, 0x40), write: true, prds: []prdEnt{{dataAt, 512}}})
	require.Equal(t, uint32(isDHRS), is)
	file, err := os.ReadFile(d.paths[0])
	require.NoError(t, err)
	assert.Equal(t, make([]byte, 8*512), file[16*512:24*512])
	assert.Equal(t, make([]byte, 16*512), file[1024*512:1040*512])
	assert.Equal(t, byte(0xee), file[24*512])
	// A range past the end: IDNF.
	binary.LittleEndian.PutUint64(r, 2040|16<<48)
	is = d.issue(0, 1, cmd{fis: ata(ataDSM, 0, 1, 1, 0x40), write: true, prds: []prdEnt{{dataAt, 512}}})
	assert.Equal(t, uint32(isTFES|isDHRS), is)
}

func TestReadOnlyDiskRefusesWrites(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20, readOnly: true})
	d.start(0)
	is := d.issue(0, 0, cmd{fis: ata(ataWriteDMAExt, 0, 1, 0, 0x40), write: true, prds: []prdEnt{{dataAt, 512}}})
	assert.Equal(t, uint32(isTFES|isDHRS), is)
	assert.Equal(t, []byte{statOK | statERR, errWP}, d.d2h(0)[2:4], "a write-protect (media) error, which libata does not retry")
}

func TestHostileCommands(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20})
	d.start(0)
	// PRD outside RAM: host bus data error.
	is := d.issue(0, 0, cmd{fis: ata(ataReadDMAExt, 0, 1, 0, 0x40), prds: []prdEnt{{memSize - 256, 512}}})
	assert.NotZero(t, is&isHBDS)
	d.restart(0)
	// Command table outside RAM: host bus fatal error.
	hdr := d.mem[clbAt:][:hdrSize]
	binary.LittleEndian.PutUint32(hdr, 5|0xffff<<16)
	binary.LittleEndian.PutUint64(hdr[8:], memSize-0x80)
	d.pwr(0, pxCI, 1)
	is = d.wait(0, func() bool { return false })
	assert.NotZero(t, is&isHBFS)
	d.restart(0)
	// Command list outside RAM.
	d.pwr(0, pxCMD, cmdFRE)
	d.pwr(0, pxCLB, 0xfffffc00)
	d.pwr(0, pxCMD, cmdFRE|cmdST)
	d.pwr(0, pxCI, 1<<31)
	is = d.wait(0, func() bool { return false })
	assert.NotZero(t, is&isHBFS)
	// CI written while stopped is ignored.
	d.pwr(0, pxCMD, cmdFRE)
	d.pwr(0, pxCI, 1)
	assert.Zero(t, d.prd(0, pxCI))
}

// atapiCmd builds a PACKET command with a 12-byte CDB, DMA.
func atapiCmd(cdb []byte, n uint32) cmd {
	c := cmd{fis: ata(ataPacket, 0, 0, 1, 0), cdb: cdb, atapi: true}
	if n > 0 {
		c.prds = []prdEnt{{dataAt, n}}
	}
	return c
}

func TestATAPI(t *testing.T) {
	const blocks = 64
	d := newDriver(t, spec{cdrom: true, size: blocks * cdBlock, fill: pattern})
	d.start(0)

	is := d.issue(0, 0, atapiCmd([]byte{scsiInquiry, 0, 0, 0, 96, 0}, 96))
	require.Equal(t, uint32(isDHRS), is)
	assert.Equal(t, uint32(36), d.prdbc(0, 0))
	assert.Equal(t, []byte{5, 0x80}, d.data(2))
	assert.Equal(t, "VMM DVD-ROM", strings.TrimSpace(string(d.data(32)[16:32])))

	is = d.issue(0, 0, atapiCmd([]byte{scsiTestUnitReady}, 0))
	require.Equal(t, uint32(isDHRS), is)

	d.issue(0, 0, atapiCmd([]byte{scsiReadCapacity}, 8))
	assert.Equal(t, uint32(blocks-1), binary.BigEndian.Uint32(d.data(4)))
	assert.Equal(t, uint32(cdBlock), binary.BigEndian.Uint32(d.data(8)[4:]))

	// READ(10) of 3 blocks at 5, READ(12) of 1 at 63.
	is = d.issue(0, 0, atapiCmd([]byte{scsiRead10, 0, 0, 0, 0, 5, 0, 0, 3, 0}, 3*cdBlock))
	require.Equal(t, uint32(isDHRS), is)
	for i, v := range d.data(3 * cdBlock) {
		if v != pattern(5*cdBlock+i) {
			t.Fatalf("READ(10) byte %d: %#x", i, v)
		}
	}
	is = d.issue(0, 0, atapiCmd([]byte{scsiRead12, 0, 0, 0, 0, 63, 0, 0, 0, 1, 0, 0}, cdBlock))
	require.Equal(t, uint32(isDHRS), is)
	assert.Equal(t, pattern(63*cdBlock), d.data(1)[0])

	// Out of range: CHECK CONDITION, then REQUEST SENSE says 05/21/00.
	is = d.issue(0, 0, atapiCmd([]byte{scsiRead10, 0, 0, 0, 0, 63, 0, 0, 2, 0}, 2*cdBlock))
	assert.Equal(t, uint32(isTFES|isDHRS), is)
	assert.Equal(t, uint32(senseIllegalRequest)<<12|statDRDY|statERR, d.prd(0, pxTFD))
	d.restart(0)
	d.issue(0, 0, atapiCmd([]byte{scsiRequestSense, 0, 0, 0, 18, 0}, 18))
	s := d.data(18)
	assert.Equal(t, []byte{0x70, senseIllegalRequest, ascLBAOutOfRange, 0}, []byte{s[0], s[2], s[12], s[13]})

	// An unknown opcode: 05/20/00.
	d.issue(0, 0, atapiCmd([]byte{0xff}, 0))
	d.restart(0)
	d.issue(0, 0, atapiCmd([]byte{scsiRequestSense, 0, 0, 0, 18, 0}, 18))
	s = d.data(18)
	assert.Equal(t, []byte{senseIllegalRequest, ascInvalidOpcode}, []byte{s[2], s[12]})
	// Sense is cleared by REQUEST SENSE.
	d.issue(0, 0, atapiCmd([]byte{scsiRequestSense, 0, 0, 0, 18, 0}, 18))
	assert.Zero(t, d.data(18)[2])

	// READ TOC format 0: one data track and the lead-out at the capacity.
	d.issue(0, 0, atapiCmd([]byte{scsiReadTOC, 0, 0, 0, 0, 0, 0, 0, 100, 0}, 100))
	toc := d.data(20)
	assert.Equal(t, uint16(18), binary.BigEndian.Uint16(toc))
	assert.Equal(t, []byte{1, 1}, toc[2:4])
	assert.Equal(t, []byte{0x14, 1}, toc[5:7])
	assert.Equal(t, byte(0xaa), toc[14])
	assert.Equal(t, uint32(blocks), binary.BigEndian.Uint32(toc[16:]))
	// MSF: the lead-out at 64 + 150 frames = 00:02:64.
	d.issue(0, 0, atapiCmd([]byte{scsiReadTOC, 2, 0, 0, 0, 0, 0, 0, 100, 0}, 100))
	assert.Equal(t, []byte{0, 0, 2, 64}, d.data(20)[16:20])

	// GET CONFIGURATION: current profile CD-ROM, the profile list first.
	d.issue(0, 0, atapiCmd([]byte{scsiGetConfiguration, 0, 0, 0, 0, 0, 0, 0x01, 0, 0}, 256))
	g := d.data(16)
	assert.Equal(t, uint16(profileCDROM), binary.BigEndian.Uint16(g[6:]))
	assert.Equal(t, uint16(0), binary.BigEndian.Uint16(g[8:]), "feature 0")
	// Only feature 1 (RT = 2).
	d.issue(0, 0, atapiCmd([]byte{scsiGetConfiguration, 2, 0, 1, 0, 0, 0, 0x01, 0, 0}, 256))
	assert.Equal(t, uint32(8+12-4), binary.BigEndian.Uint32(d.data(4)))

	// GET EVENT STATUS NOTIFICATION, polled, media class.
	d.issue(0, 0, atapiCmd([]byte{scsiGetEventStatus, 1, 0, 0, 0x10, 0, 0, 0, 8, 0}, 8))
	assert.Equal(t, []byte{0, 6, 4, 0x10, 0, 2}, d.data(6))
	// Asynchronous mode is refused.
	is = d.issue(0, 0, atapiCmd([]byte{scsiGetEventStatus, 0, 0, 0, 0x10, 0, 0, 0, 8, 0}, 8))
	assert.NotZero(t, is&isTFES)
	d.restart(0)

	// MODE SENSE(10) capabilities page; saved values are refused.
	d.issue(0, 0, atapiCmd([]byte{scsiModeSense10, 0, 0x2a, 0, 0, 0, 0, 0, 64, 0}, 64))
	m := d.data(10)
	assert.Equal(t, uint16(28), binary.BigEndian.Uint16(m))
	assert.Equal(t, byte(0x2a), m[8])
	is = d.issue(0, 0, atapiCmd([]byte{scsiModeSense10, 0, 0xea, 0, 0, 0, 0, 0, 64, 0}, 64))
	assert.NotZero(t, is&isTFES)
	d.restart(0)

	// PIO (features bit 0 clear): a PIO Setup FIS comes first.
	c := atapiCmd([]byte{scsiReadCapacity}, 8)
	c.fis = ata(ataPacket, 0, 0, 0, 0)
	is = d.issue(0, 0, c)
	assert.Equal(t, uint32(isDHRS|isPSS), is)

	// Writes do not exist on the drive.
	is = d.issue(0, 0, atapiCmd([]byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}, cdBlock))
	assert.NotZero(t, is&isTFES)
}

func TestInterruptNeedsGHCIE(t *testing.T) {
	d := newDriver(t, spec{size: 1 << 20})
	d.start(0)
	d.wr(regGHC, ghcAE) // IE off: SeaBIOS and OVMF poll
	before := d.msi.count()
	d.issue(0, 0, cmd{fis: ata(ataFlushCache, 0, 0, 0, 0)})
	assert.Equal(t, before, d.msi.count())
	// Re-enabling with a pending status raises it.
	d.place(0, 1, cmd{fis: ata(ataFlushCache, 0, 0, 0, 0)})
	d.pwr(0, pxCI, 2)
	for d.prd(0, pxCI) != 0 {
	}
	assert.Equal(t, uint32(1), d.rd(regIS))
	d.wr(regGHC, ghcAE|ghcIE)
	assert.Equal(t, before+1, d.msi.count())
	d.pwr(0, pxIS, 0xffffffff)
	assert.Zero(t, d.rd(regIS))
}

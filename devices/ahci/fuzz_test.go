package ahci

import (
	"encoding/binary"
	"os"
	"testing"
	"time"
)

// fuzzTable is one command table: FIS, CDB and PRDT from the fuzzer.
func fuzzTable(fis, cdb, prdt []byte) []byte {
	t := make([]byte, prdtOffset, prdtOffset+len(prdt))
	copy(t, fis)
	copy(t[cdbOffset:], cdb)
	return append(t, prdt...)
}

func prdBytes(ents ...prdEnt) []byte {
	var b []byte
	for _, e := range ents {
		b = binary.LittleEndian.AppendUint64(b, e.addr)
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint32(b, e.n-1)
	}
	return b
}

// runFuzzCommand puts an arbitrary command table (and header DW0) in slot
// 0 of a disk port or a CD-ROM port: the HBA must answer (complete or
// error), never panic or hang, keep the image's size, and work again after
// the recovery drivers do.
func runFuzzCommand(t *testing.T, onCD bool, dw0 uint32, table []byte, ncq bool) {
	d := newDriver(t, spec{size: 64 << 10}, spec{cdrom: true, size: 16 * cdBlock})
	port := 0
	if onCD {
		port = 1
	}
	d.start(port)
	hdr := d.mem[clbAt+port*0x400:][:hdrSize]
	binary.LittleEndian.PutUint32(hdr, dw0)
	binary.LittleEndian.PutUint64(hdr[8:], d.table(port, 0))
	copy(d.mem[d.table(port, 0):][:ctSize], table)
	if ncq {
		d.pwr(port, pxSACT, ^uint32(0))
	}
	d.pwr(port, pxCI, 1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		// A queued command is done when its tag leaves SACT.
		if d.prd(port, pxCI) == 0 && (!ncq || d.prd(port, pxSACT) != ^uint32(0)) {
			break
		}
		if d.prd(port, pxIS)&(isTFES|isHBFS|isHBDS) != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("command did not complete: CI %#x SACT %#x IS %#x", d.prd(port, pxCI), d.prd(port, pxSACT), d.prd(port, pxIS))
		}
		time.Sleep(50 * time.Microsecond)
	}
	// Recovery as libata's: ST cycled, log 10h read (which a queued
	// command's error needs before anything else runs), then a command
	// that must work.
	d.restart(port)
	c := cmd{fis: ata(ataIdentify, 0, 0, 0, 0), prds: []prdEnt{{dataAt, 512}}}
	if onCD {
		c.fis[2] = ataIdentifyPacket
	} else if is := d.issue(port, 1, readLog(false, logNCQError, 0, 1)); is&isTFES != 0 {
		t.Fatalf("READ LOG EXT 10h after recovery failed: IS %#x", is)
	}
	if is := d.issue(port, 1, c); is&isTFES != 0 {
		t.Fatalf("IDENTIFY after recovery failed: IS %#x", is)
	}
	d.h.Close()
	fi, err := os.Stat(d.paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 64<<10 {
		t.Fatalf("image size changed to %d", fi.Size())
	}
}

// FuzzCommandTable fuzzes the command header's DW0, the command FIS and
// the PRDT of one command.
func FuzzCommandTable(f *testing.F) {
	add := func(onCD bool, dw0 uint32, fis []byte, cdb []byte, prdt []byte) {
		f.Add(onCD, dw0, fuzzTable(fis, cdb, prdt))
	}
	one := prdBytes(prdEnt{dataAt, 4096})
	add(false, 5|1<<16, ata(ataIdentify, 0, 0, 0, 0), nil, one)
	add(false, 5|1<<16, ata(ataReadDMAExt, 0, 8, 0, 0x40), nil, one)
	add(false, 5|1<<16|1<<6, ata(ataWriteDMAExt, 120, 8, 0, 0x40), nil, one)
	add(false, 5|1<<16, ata(ataReadFPDMA, 4, 3<<3, 8, 0x40), nil, one)
	add(false, 5|1<<16|1<<6, ata(ataWriteFPDMA, 4, 7<<3, 8, 0xc0), nil, one)
	add(false, 5|1<<16|1<<6, ata(ataDSM, 0, 1, 1, 0x40), nil, one)
	add(false, 5|1<<16|1<<6, ata(ataWriteFPDMA, 1<<20, 9<<3, 8, 0x40), nil, one)
	add(false, 5|1<<16, ata(ataReadLogExt, logDirectory, 1, 0, 0x40), nil, one)
	add(false, 5|1<<16, ata(ataReadLogDMAExt, logNCQError, 1, 0, 0x40), nil, one)
	add(false, 5|1<<16, ata(ataReadLogExt, logNCQError|1<<8|1<<32, 0xffff, 0, 0x40), nil, one)
	add(false, 5|2<<16, ata(ataReadDMAExt, 0, 0, 0, 0x40), nil, prdBytes(prdEnt{dataAt, 1 << 22}, prdEnt{memSize - 2, 4}))
	add(false, 5|1<<16, ata(ataReadDMAExt, 0, 1, 0, 0x40), nil, prdBytes(prdEnt{^uint64(0) - 7, 512}))
	add(false, 5|0xffff<<16, ata(ataReadDMAExt, 0, 1, 0, 0x40), nil, nil)
	add(false, 5, []byte{fisH2D, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4}, nil, nil)
	add(false, 5, []byte{0x39}, nil, nil)
	add(true, 5|1<<5|1<<16, ata(ataPacket, 0, 0, 1, 0), []byte{scsiRead10, 0, 0, 0, 0, 1, 0, 0, 2, 0}, one)
	add(true, 5|1<<5|1<<16, ata(ataPacket, 0, 0, 0, 0), []byte{scsiInquiry, 0, 0, 0, 0xff, 0}, one)
	f.Fuzz(func(t *testing.T, onCD bool, dw0 uint32, table []byte) {
		if len(table) > ctSize {
			table = table[:ctSize]
		}
		ncq := len(table) > 2 && isNCQ(table[2])
		runFuzzCommand(t, onCD, dw0, table, ncq)
	})
}

// FuzzATAPICDB sends an arbitrary CDB to the CD-ROM with a 64 KiB PRDT.
func FuzzATAPICDB(f *testing.F) {
	for _, cdb := range [][]byte{
		{scsiTestUnitReady},
		{scsiRequestSense, 0, 0, 0, 18, 0},
		{scsiInquiry, 0, 0, 0, 36, 0},
		{scsiInquiry, 1, 0x80, 0, 36, 0},
		{scsiReadCapacity},
		{scsiRead10, 0, 0, 0, 0, 15, 0, 0, 1, 0},
		{scsiRead10, 0, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0},
		{scsiRead12, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0},
		{scsiReadCD, 0, 0, 0, 0, 1, 0, 0, 2, 0x10, 0, 0},
		{scsiReadTOC, 2, 2, 0, 0, 0, 0xaa, 0xff, 0xff, 0x80},
		{scsiGetConfiguration, 1, 0, 3, 0, 0, 0, 0xff, 0xff, 0},
		{scsiGetEventStatus, 1, 0, 0, 0xff, 0, 0, 0xff, 0xff, 0},
		{scsiModeSense10, 0, 0x3f, 0, 0, 0, 0, 0xff, 0xff, 0},
		{scsiModeSense10, 0, 0x7f, 0, 0, 0, 0, 0xff, 0xff, 0},
		{scsiReadDiscInfo, 0, 0, 0, 0, 0, 0, 0, 34, 0},
		{scsiMechanismStatus, 0, 0, 0, 0, 0, 0, 0, 0, 8},
		{scsiReadFormatCaps, 0, 0, 0, 0, 0, 0, 0, 12, 0},
		{0x5b},
	} {
		f.Add(cdb, true)
	}
	f.Fuzz(func(t *testing.T, cdb []byte, dma bool) {
		var feat uint16
		if dma {
			feat = 1
		}
		table := fuzzTable(ata(ataPacket, 0, 0, feat, 0), cdb, prdBytes(prdEnt{dataAt, 64 << 10}))
		runFuzzCommand(t, true, 5|1<<5|1<<16, table, false)
	})
}

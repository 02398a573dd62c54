package scsi

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/vmmdev/vmm/storage/block"
	"github.com/vmmdev/vmm/storage/raw"
)

const testBlocks = 4096

// flushCounter counts the image's Flush calls (fdatasync for a raw image).
type flushCounter struct {
	block.Device
	flushes atomic.Int64
}

func (f *flushCounter) Flush() error {
	f.flushes.Add(1)
	return f.Device.Flush()
}

// newDisk makes an image whose block i holds byte i (mod 256).
func newDisk(t testing.TB, readOnly bool) (*Disk, *flushCounter, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	img := make([]byte, testBlocks*BlockSize)
	for i := range img {
		img[i] = byte(i / BlockSize)
	}
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	im, err := raw.Open(raw.Options{Path: path, ReadOnly: readOnly}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { im.Close() })
	fc := &flushCounter{Device: im}
	return NewDisk("sda", fc, "SN-TEST", nil), fc, path
}

func cdb10(op byte, lba uint32, n uint16) []byte {
	c := make([]byte, 10)
	c[0] = op
	binary.BigEndian.PutUint32(c[2:], lba)
	binary.BigEndian.PutUint16(c[7:], n)
	return c
}

func cdb16(op byte, lba uint64, n uint32) []byte {
	c := make([]byte, 16)
	c[0] = op
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], n)
	return c
}

func wantGood(t *testing.T, r Result) {
	t.Helper()
	if r.Status != StatusGood {
		t.Fatalf("status %#x sense %+v, want GOOD", r.Status, r.Sense)
	}
}

func wantSense(t *testing.T, r Result, key, asc byte) {
	t.Helper()
	if r.Status != StatusCheckCondition || r.Sense.Key != key || r.Sense.ASC != asc {
		t.Fatalf("status %#x sense %+v, want CHECK CONDITION %#x/%#x", r.Status, r.Sense, key, asc)
	}
}

func TestInquiryAndVPD(t *testing.T) {
	d, _, _ := newDisk(t, false)
	buf := make([]byte, 256)
	r := d.Execute([]byte{OpInquiry, 0, 0, 0, 255, 0}, Buffer{buf})
	wantGood(t, r)
	if r.N != 36 || buf[0] != 0 || string(buf[8:16]) != "Msft    " || string(buf[16:32]) != "Virtual Disk    " {
		t.Fatalf("standard inquiry %q (%d bytes)", buf[:r.N], r.N)
	}
	// Allocation length cuts the answer.
	r = d.Execute([]byte{OpInquiry, 0, 0, 0, 5, 0}, Buffer{buf})
	if r.N != 5 {
		t.Fatalf("inquiry with allocation length 5 moved %d bytes", r.N)
	}
	// A buffer in two pieces is filled in order.
	a, b := make([]byte, 10), make([]byte, 100)
	r = d.Execute([]byte{OpInquiry, 0, 0, 0, 255, 0}, Buffer{a, b})
	if r.N != 36 || string(a[8:10]) != "Ms" || string(b[:6]) != "ft    " {
		t.Fatalf("split inquiry: %q %q", a, b[:30])
	}
	r = d.Execute([]byte{OpInquiry, 1, vpdSupported, 0, 255, 0}, Buffer{buf})
	wantGood(t, r)
	if !bytes.Equal(buf[4:r.N], vpdPages) {
		t.Fatalf("supported pages %x", buf[:r.N])
	}
	for _, p := range vpdPages {
		clear(buf)
		r = d.Execute([]byte{OpInquiry, 1, p, 0, 255, 0}, Buffer{buf})
		wantGood(t, r)
		if buf[1] != p || int(binary.BigEndian.Uint16(buf[2:]))+4 != r.N {
			t.Fatalf("page %#x: header %x, %d bytes", p, buf[:4], r.N)
		}
	}
	d.Execute([]byte{OpInquiry, 1, vpdSerial, 0, 255, 0}, Buffer{buf})
	if string(buf[4:11]) != "SN-TEST" {
		t.Fatalf("serial page %q", buf[:12])
	}
	d.Execute([]byte{OpInquiry, 1, vpdIdentification, 0, 255, 0}, Buffer{buf})
	if buf[4] != 0x01 || buf[5] != 0x03 || buf[8]>>4 != 6 {
		t.Fatalf("identification page starts %x, want an NAA 6 designator", buf[:16])
	}
	d.Execute([]byte{OpInquiry, 1, vpdProvisioning, 0, 255, 0}, Buffer{buf})
	if buf[5]&0x80 == 0 {
		t.Fatalf("provisioning page %x: no LBPU on a raw image that punches holes", buf[:8])
	}
	wantSense(t, d.Execute([]byte{OpInquiry, 1, 0x89, 0, 255, 0}, Buffer{buf}), KeyIllegalRequest, ASCInvalidFieldCDB)
	wantSense(t, d.Execute([]byte{OpInquiry, 0, 0x80, 0, 255, 0}, Buffer{buf}), KeyIllegalRequest, ASCInvalidFieldCDB)
}

func TestCapacityAndModeSense(t *testing.T) {
	d, _, _ := newDisk(t, false)
	buf := make([]byte, 64)
	wantGood(t, d.Execute(make([]byte, 10), Buffer{buf})) // TEST UNIT READY (longer CDB is fine)
	r := d.Execute([]byte{OpReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0}, Buffer{buf})
	wantGood(t, r)
	if binary.BigEndian.Uint32(buf) != testBlocks-1 || binary.BigEndian.Uint32(buf[4:]) != BlockSize {
		t.Fatalf("read capacity(10) %x", buf[:8])
	}
	c := make([]byte, 16)
	c[0], c[1] = OpServiceActionIn, saReadCapacity16
	binary.BigEndian.PutUint32(c[10:], 32)
	r = d.Execute(c, Buffer{buf})
	wantGood(t, r)
	if r.N != 32 || binary.BigEndian.Uint64(buf) != testBlocks-1 || buf[14]&0x80 == 0 {
		t.Fatalf("read capacity(16) %x", buf[:32])
	}
	clear(buf)
	r = d.Execute([]byte{OpModeSense6, 0, modePageAll, 0, 255, 0}, Buffer{buf})
	wantGood(t, r)
	if int(buf[0])+1 != r.N || buf[2]&0x80 != 0 || buf[4] != modePageCaching || buf[6]&0x04 == 0 {
		t.Fatalf("mode sense(6) %x", buf[:r.N])
	}
	r = d.Execute([]byte{OpModeSense10, 0, modePageCaching, 0, 0, 0, 0, 0, 255, 0}, Buffer{buf})
	wantGood(t, r)
	if int(binary.BigEndian.Uint16(buf))+2 != r.N || buf[8] != modePageCaching {
		t.Fatalf("mode sense(10) %x", buf[:r.N])
	}
	wantSense(t, d.Execute([]byte{OpModeSense6, 0, 0xc0 | modePageAll, 0, 255, 0}, Buffer{buf}), KeyIllegalRequest, ASCSavingUnsupported)
	wantSense(t, d.Execute([]byte{OpModeSense6, 0, 0x1c, 0, 255, 0}, Buffer{buf}), KeyIllegalRequest, ASCInvalidFieldCDB)
	r = d.Execute([]byte{OpRequestSense, 0, 0, 0, 18, 0}, Buffer{buf})
	if r.Status != StatusGood || r.N != 18 || buf[0] != 0x70 || buf[2] != KeyNoSense {
		t.Fatalf("request sense %x", buf[:18])
	}
}

func TestReadWriteFlush(t *testing.T) {
	d, fc, path := newDisk(t, false)
	data := make([]byte, 8*BlockSize)
	for i := range data {
		data[i] = byte(i*13 + 1)
	}
	// Scattered guest pages: 4 KiB each.
	wantGood(t, d.Execute(cdb10(OpWrite10, 100, 8), Buffer{data[:4096], data[4096:]}))
	wantGood(t, d.Execute(cdb16(OpWrite16, 200, 1), Buffer{data[:BlockSize]}))
	wantGood(t, d.Execute([]byte{OpWrite6, 0, 1, 44, 1, 0}, Buffer{data[:BlockSize]})) // LBA 300
	n := fc.flushes.Load()
	wantGood(t, d.Execute(cdb10(OpSyncCache10, 0, 0), nil))
	wantGood(t, d.Execute(cdb16(OpSyncCache16, 0, 0), nil))
	if fc.flushes.Load() != n+2 {
		t.Fatalf("SYNCHRONIZE CACHE flushed %d times, want 2", fc.flushes.Load()-n)
	}
	img, _ := os.ReadFile(path)
	if !bytes.Equal(img[100*BlockSize:108*BlockSize], data) || !bytes.Equal(img[200*BlockSize:201*BlockSize], data[:BlockSize]) ||
		!bytes.Equal(img[300*BlockSize:301*BlockSize], data[:BlockSize]) || img[108*BlockSize] != 108 {
		t.Fatal("image does not hold the writes")
	}
	got := make([]byte, 8*BlockSize+100)
	r := d.Execute(cdb16(OpRead16, 100, 8), Buffer{got})
	wantGood(t, r)
	if r.N != 8*BlockSize || !bytes.Equal(got[:r.N], data) || got[r.N] != 0 {
		t.Fatalf("read back %d bytes, differ or overran", r.N)
	}
	r = d.Execute([]byte{OpRead6, 0, 0, 7, 1, 0}, Buffer{got})
	if r.N != BlockSize || got[0] != 7 {
		t.Fatal("READ(6)")
	}
	// FUA writes are durable before they complete.
	c := cdb10(OpWrite10, 5, 1)
	c[1] = 0x08
	n = fc.flushes.Load()
	wantGood(t, d.Execute(c, Buffer{data[:BlockSize]}))
	if fc.flushes.Load() != n+1 {
		t.Fatal("FUA write did not flush")
	}
	st := d.Stats()
	if st.Writes != 4 || st.Reads != 2 || st.BytesWritten != 11*BlockSize || st.Flushes != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestErrors(t *testing.T) {
	d, _, _ := newDisk(t, false)
	buf := make([]byte, 16*BlockSize)
	for name, c := range map[string]struct {
		cdb      []byte
		buf      Buffer
		key, asc byte
	}{
		"past the end":     {cdb10(OpRead10, testBlocks, 1), Buffer{buf}, KeyIllegalRequest, ASCLBAOutOfRange},
		"over the end":     {cdb16(OpWrite16, testBlocks-1, 2), Buffer{buf}, KeyIllegalRequest, ASCLBAOutOfRange},
		"LBA wraps":        {cdb16(OpRead16, 1<<63, 1), Buffer{buf}, KeyIllegalRequest, ASCLBAOutOfRange},
		"count wraps":      {cdb16(OpRead16, 1, 0xffffffff), Buffer{buf}, KeyIllegalRequest, ASCLBAOutOfRange},
		"buffer too small": {cdb10(OpRead10, 0, 17), Buffer{buf}, KeyIllegalRequest, ASCInvalidFieldCDB},
		"over max":         {cdb16(OpRead16, 0, MaxTransfer/BlockSize+1), Buffer{buf}, KeyIllegalRequest, ASCInvalidFieldCDB},
		"unknown opcode":   {[]byte{0xc5, 0, 0, 0, 0, 0}, nil, KeyIllegalRequest, ASCInvalidOpcode},
		"report opcodes":   {make([]byte, 12), nil, KeyIllegalRequest, ASCInvalidOpcode},
		"empty CDB":        {nil, nil, KeyIllegalRequest, ASCInvalidOpcode},
		"short CDB":        {[]byte{OpRead16, 0, 0}, Buffer{buf}, KeyIllegalRequest, ASCInvalidFieldCDB},
		"RC16 other SA":    {[]byte{OpServiceActionIn, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, Buffer{buf}, KeyIllegalRequest, ASCInvalidFieldCDB},
		"write same 0":     {cdb16(OpWriteSame16, 0, 0), Buffer{buf}, KeyIllegalRequest, ASCInvalidFieldCDB},
	} {
		if name == "report opcodes" {
			c.cdb[0], c.cdb[1] = 0xa3, 0x0c
		}
		r := d.Execute(c.cdb, c.buf)
		if r.Status != StatusCheckCondition || r.Sense.Key != c.key || r.Sense.ASC != c.asc || r.N != 0 {
			t.Errorf("%s: %+v, want %#x/%#x", name, r, c.key, c.asc)
		}
	}
	if s := (Sense{KeyDataProtect, ASCWriteProtected, 0}).Bytes(); len(s) != SenseSize || s[0] != 0x70 || s[2] != 7 || s[12] != 0x27 || s[7] != 10 {
		t.Fatalf("sense bytes %x", s)
	}
}

func TestReadOnly(t *testing.T) {
	d, _, path := newDisk(t, true)
	buf := make([]byte, 4096)
	wantGood(t, d.Execute(cdb10(OpRead10, 0, 1), Buffer{buf}))
	wantGood(t, d.Execute(cdb10(OpSyncCache10, 0, 0), nil))
	for name, c := range map[string][]byte{
		"write10": cdb10(OpWrite10, 0, 1), "write16": cdb16(OpWrite16, 0, 1), "write6": {OpWrite6, 0, 0, 0, 1, 0},
	} {
		wantSense(t, d.Execute(c, Buffer{buf}), KeyDataProtect, ASCWriteProtected)
		_ = name
	}
	r := d.Execute([]byte{OpModeSense6, 0, modePageAll, 0, 255, 0}, Buffer{buf})
	if r.Status != StatusGood || buf[2]&0x80 == 0 {
		t.Fatal("mode sense of a read-only disk has no WP bit")
	}
	// A read-only image cannot punch holes: no UNMAP, no WRITE SAME.
	wantSense(t, d.Execute(cdb10(OpUnmap, 0, 24), Buffer{buf}), KeyIllegalRequest, ASCInvalidOpcode)
	img, _ := os.ReadFile(path)
	if img[0] != 0 || img[BlockSize] != 1 {
		t.Fatal("read-only image changed")
	}
}

func TestUnmapAndWriteSame(t *testing.T) {
	d, _, path := newDisk(t, false)
	p := make([]byte, 40)
	binary.BigEndian.PutUint16(p[0:], 38)
	binary.BigEndian.PutUint16(p[2:], 32)
	binary.BigEndian.PutUint64(p[8:], 10)
	binary.BigEndian.PutUint32(p[16:], 4)
	binary.BigEndian.PutUint64(p[24:], 1000)
	binary.BigEndian.PutUint32(p[32:], 24)
	c := cdb10(OpUnmap, 0, 0)
	binary.BigEndian.PutUint16(c[7:], 40)
	wantGood(t, d.Execute(c, Buffer{p}))
	zero := make([]byte, BlockSize)
	wantGood(t, d.Execute(cdb16(OpWriteSame16, 50, 3), Buffer{zero}))
	blk := bytes.Repeat([]byte{0xab}, BlockSize)
	wantGood(t, d.Execute(cdb10(OpWriteSame10, 60, 2), Buffer{blk}))
	img, _ := os.ReadFile(path)
	isZero := func(lba, n int) bool {
		return bytes.Equal(img[lba*BlockSize:(lba+n)*BlockSize], make([]byte, n*BlockSize))
	}
	if !isZero(10, 4) || !isZero(1000, 24) || !isZero(50, 3) || img[14*BlockSize] != 14 || img[9*BlockSize] != 9 || img[53*BlockSize] != 53 {
		t.Fatal("UNMAP / WRITE SAME zeroed the wrong blocks")
	}
	if !bytes.Equal(img[60*BlockSize:62*BlockSize], bytes.Repeat([]byte{0xab}, 2*BlockSize)) || img[62*BlockSize] != 62 {
		t.Fatal("WRITE SAME of a pattern")
	}
	// A descriptor past the end fails the whole command before any unmap.
	binary.BigEndian.PutUint64(p[8:], 20)
	binary.BigEndian.PutUint64(p[24:], testBlocks-1)
	wantSense(t, d.Execute(c, Buffer{p}), KeyIllegalRequest, ASCLBAOutOfRange)
	img, _ = os.ReadFile(path)
	if img[20*BlockSize] != 20 {
		t.Fatal("failed UNMAP changed the image")
	}
	binary.BigEndian.PutUint16(p[2:], 33)
	wantSense(t, d.Execute(c, Buffer{p}), KeyIllegalRequest, ASCInvalidFieldParam)
	binary.BigEndian.PutUint16(c[7:], 41)
	wantSense(t, d.Execute(c, Buffer{p}), KeyIllegalRequest, ASCParameterListLen)
}

func TestReportLUNs(t *testing.T) {
	d, _, _ := newDisk(t, false)
	tg := &Target{LUNs: []*Disk{d, d, d}}
	buf := make([]byte, 64)
	c := make([]byte, 12)
	c[0] = OpReportLUNs
	binary.BigEndian.PutUint32(c[6:], 64)
	r := tg.ReportLUNs(c, Buffer{buf})
	wantGood(t, r)
	if r.N != 32 || binary.BigEndian.Uint32(buf) != 24 || buf[8+8*2+1] != 2 {
		t.Fatalf("report luns %x", buf[:r.N])
	}
	binary.BigEndian.PutUint32(c[6:], 4)
	wantSense(t, tg.ReportLUNs(c, Buffer{buf}), KeyIllegalRequest, ASCInvalidFieldCDB)
	if tg.Lookup(3) != nil || tg.Lookup(-1) != nil || tg.Lookup(2) != d {
		t.Fatal("lookup")
	}
	var none *Target
	binary.BigEndian.PutUint32(c[6:], 64)
	r = none.ReportLUNs(c, Buffer{buf})
	wantGood(t, r)
	if r.N != 8 || binary.BigEndian.Uint32(buf) != 0 || none.Lookup(0) != nil {
		t.Fatalf("no target: %x", buf[:r.N])
	}
	r, ok := NotPresent([]byte{OpInquiry, 0, 0, 0, 255, 0}, Buffer{buf})
	if !ok || r.Status != StatusGood || r.N != 36 || buf[0] != 0x7f {
		t.Fatalf("not-present inquiry %+v %x", r, buf[:4])
	}
	if r, ok := NotPresent([]byte{OpInquiry, 1, 0x83, 0, 255, 0}, Buffer{buf}); !ok || r.Status != StatusCheckCondition {
		t.Fatalf("not-present VPD %+v", r)
	}
	if _, ok := NotPresent([]byte{OpTestUnitReady, 0, 0, 0, 0, 0}, nil); ok {
		t.Fatal("not-present answered TEST UNIT READY")
	}
}

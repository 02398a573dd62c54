package scsi

import (
	"encoding/binary"
	"os"
	"testing"
)

// FuzzCDB runs an arbitrary CDB with an arbitrary data buffer (in two
// pieces) on a disk and on the target: no panic, never more data moved
// than the buffer holds, sense only with CHECK CONDITION, and the image
// keeps its size.
func FuzzCDB(f *testing.F) {
	f.Add([]byte{OpInquiry, 1, vpdIdentification, 0, 255, 0}, uint16(300), []byte{})
	f.Add(cdb10(OpRead10, 10, 8), uint16(4096), []byte{})
	f.Add(cdb16(OpWrite16, testBlocks-8, 8), uint16(4096), []byte{1, 2, 3})
	f.Add([]byte{OpModeSense10, 0, modePageAll, 0, 0, 0, 0, 0, 255, 0}, uint16(100), []byte{})
	unmap := make([]byte, 24)
	binary.BigEndian.PutUint16(unmap[2:], 16)
	binary.BigEndian.PutUint64(unmap[8:], 5)
	binary.BigEndian.PutUint32(unmap[16:], 3)
	f.Add(cdb10(OpUnmap, 0, 24), uint16(24), unmap)
	f.Add(cdb16(OpWriteSame16, 7, 9), uint16(512), []byte{})
	f.Add([]byte{OpReportLUNs, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, uint16(256), []byte{})
	f.Add([]byte{OpServiceActionIn, saReadCapacity16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}, uint16(32), []byte{})
	f.Fuzz(func(t *testing.T, cdb []byte, size uint16, data []byte) {
		d, _, path := newDisk(t, false)
		a := make([]byte, int(size)/2)
		b := make([]byte, int(size)-len(a))
		Buffer{a, b}.copyIn(data)
		var r Result
		if len(cdb) > 0 && cdb[0] == OpReportLUNs {
			r = (&Target{LUNs: []*Disk{d}}).ReportLUNs(cdb, Buffer{a, b})
		} else {
			r = d.Execute(cdb, Buffer{a, b})
		}
		if r.N < 0 || r.N > int(size) {
			t.Fatalf("moved %d bytes with a %d-byte buffer", r.N, size)
		}
		if r.Status != StatusGood && (r.Status != StatusCheckCondition || r.N != 0) {
			t.Fatalf("result %+v", r)
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() != testBlocks*BlockSize {
			t.Fatalf("image size changed: %v", err)
		}
	})
}

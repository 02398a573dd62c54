package balloon

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"github.com/vmmdev/vmm/devices/virtio/internal/vqdriver"
)

// FuzzParseStats: any statistics buffer, split anywhere, parses to known
// names only, without reading past what it was given.
func FuzzParseStats(f *testing.F) {
	f.Add(statsBuf(map[uint16]uint64{4: 1, 5: 2, 6: 3}), uint8(3))
	f.Add([]byte{0xff, 0xff, 1, 2, 3}, uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		at := min(int(split), len(data))
		got := ParseStats([][]byte{data[:at], data[at:]})
		if len(got) > len(data)/statSize {
			t.Fatalf("%d statistics from %d bytes", len(got), len(data))
		}
		for name := range got {
			known := false
			for _, n := range statNames {
				known = known || n == name
			}
			if !known {
				t.Fatalf("unknown statistic %q", name)
			}
		}
	})
}

// FuzzInflate: whatever PFNs a guest sends, only whole pages inside guest
// memory are discarded.
func FuzzInflate(f *testing.F) {
	f.Add(binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 0x10), 0xffffffff))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, pfns []byte) {
		mem := vqdriver.Mem(make([]byte, 64*PageSize))
		base := uintptr(unsafe.Pointer(&mem[0]))
		rec := &recorder{base: base}
		d := New(Options{Discard: rec.discard})
		d.inflate(mem, [][]byte{pfns})
		for _, r := range rec.got() {
			if r[0]%PageSize != 0 || r[1] != PageSize || r[0]+r[1] > uint64(len(mem)) {
				t.Fatalf("discarded [%#x, +%#x) of %#x bytes", r[0], r[1], len(mem))
			}
		}
		st := d.Stats()
		if st.InflatedPages+st.IgnoredPages != uint64(len(pfns)/4) {
			t.Fatalf("%d + %d pages from %d PFNs", st.InflatedPages, st.IgnoredPages, len(pfns)/4)
		}
	})
}

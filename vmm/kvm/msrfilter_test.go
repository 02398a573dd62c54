package kvm

import (
	"errors"
	"testing"
	"unsafe"
)

func TestEncodeMSRFilter(t *testing.T) {
	bm := []byte{0x05} // allow MSRs base+0 and base+2
	k, keep, err := encodeMSRFilter(MSRFilter{DefaultDeny: true, Ranges: []MSRFilterRange{
		{Flags: MSRFilterRead, Base: 0x40000000, NMSRs: 3, Bitmap: bm},
		{Flags: MSRFilterRead | MSRFilterWrite, Base: 0xc0000080, NMSRs: 65, Bitmap: make([]byte, 9)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if k.Flags != 1 {
		t.Errorf("DefaultDeny flag = %d, want 1", k.Flags)
	}
	r := k.Ranges[0]
	if r.Flags != MSRFilterRead || r.Base != 0x40000000 || r.NMSRs != 3 {
		t.Errorf("range 0 = %+v", r)
	}
	// The kernel reads whole longs: a 3-MSR bitmap becomes 8 bytes, 65 MSRs 16.
	if len(keep) != 2 || len(keep[0]) != 8 || len(keep[1]) != 16 {
		t.Fatalf("padded bitmaps %d/%d bytes, want 8/16", len(keep[0]), len(keep[1]))
	}
	if r.Bitmap != &keep[0][0] || keep[0][0] != 0x05 {
		t.Errorf("range 0 bitmap does not point at a copy of the caller's bits")
	}
	bm[0] = 0xff
	if keep[0][0] != 0x05 {
		t.Errorf("bitmap not copied: caller's later edits leak in")
	}
	if k.Ranges[2].NMSRs != 0 || k.Ranges[2].Bitmap != nil {
		t.Errorf("unused range not zero: %+v", k.Ranges[2])
	}
	// Allow-by-default with no ranges clears the filter.
	if k, _, err := encodeMSRFilter(MSRFilter{}); err != nil || k.Flags != 0 {
		t.Errorf("empty filter = %+v, %v", k, err)
	}
}

func TestEncodeMSRFilterRejects(t *testing.T) {
	ok := MSRFilterRange{Flags: MSRFilterRead, Base: 0, NMSRs: 8, Bitmap: []byte{0}}
	for name, f := range map[string]MSRFilter{
		"17 ranges":     {Ranges: make([]MSRFilterRange, 17)},
		"no flags":      {Ranges: []MSRFilterRange{{Base: 0, NMSRs: 8, Bitmap: []byte{0}}}},
		"unknown flags": {Ranges: []MSRFilterRange{{Flags: 4, NMSRs: 8, Bitmap: []byte{0}}}},
		"no MSRs":       {Ranges: []MSRFilterRange{{Flags: MSRFilterRead, Bitmap: []byte{0}}}},
		"short bitmap":  {Ranges: []MSRFilterRange{ok, {Flags: MSRFilterWrite, NMSRs: 9, Bitmap: []byte{0}}}},
		"huge range":    {Ranges: []MSRFilterRange{{Flags: MSRFilterRead, NMSRs: 0x600*8 + 1, Bitmap: make([]byte, 0x601)}}},
		"wraps":         {Ranges: []MSRFilterRange{{Flags: MSRFilterRead, Base: 0xfffffff8, NMSRs: 16, Bitmap: []byte{0, 0}}}},
	} {
		if _, _, err := encodeMSRFilter(f); !errors.Is(err, ErrInvalidMSRFilter) {
			t.Errorf("%s: err = %v, want ErrInvalidMSRFilter", name, err)
		}
	}
}

// FuzzEncodeMSRFilter checks that user-supplied filters never panic the
// encoder and that accepted ones give the kernel enough bitmap to read.
func FuzzEncodeMSRFilter(f *testing.F) {
	f.Add(uint8(1), uint32(0x40000000), uint32(0x200), uint16(64), true, uint8(3))
	f.Add(uint8(3), uint32(0), uint32(1), uint16(1), false, uint8(1))
	f.Add(uint8(0), uint32(0xffffffff), uint32(2), uint16(1), false, uint8(17))
	f.Add(uint8(2), uint32(0xc0000000), uint32(0x3000), uint16(0x600), false, uint8(16))
	f.Fuzz(func(t *testing.T, flags uint8, base, nmsrs uint32, bitmapLen uint16, deny bool, nranges uint8) {
		rs := make([]MSRFilterRange, int(nranges)%20)
		for i := range rs {
			rs[i] = MSRFilterRange{Flags: uint32(flags), Base: base + uint32(i)*nmsrs, NMSRs: nmsrs, Bitmap: make([]byte, bitmapLen%0x1000)}
		}
		k, keep, err := encodeMSRFilter(MSRFilter{DefaultDeny: deny, Ranges: rs})
		if err != nil {
			return
		}
		for i := range rs {
			kr := k.Ranges[i]
			kernelReads := (uint64(kr.NMSRs) + 63) / 64 * 8
			if uint64(len(keep[i])) < kernelReads || kernelReads > msrFilterMaxBitmap {
				t.Fatalf("range %d: %d-byte bitmap for %d MSRs", i, len(keep[i]), kr.NMSRs)
			}
			if unsafe.Pointer(kr.Bitmap) != unsafe.Pointer(&keep[i][0]) {
				t.Fatalf("range %d: bitmap pointer does not match kept buffer", i)
			}
		}
	})
}

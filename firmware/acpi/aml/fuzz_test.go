package aml

import (
	"encoding/binary"
	"testing"
)

// decodePkgLength is the reader's side of PkgLength, for round trips.
func decodePkgLength(b []byte) (value, size int) {
	n := int(b[0]>>6) + 1
	if n == 1 {
		return int(b[0] & 0x3f), 1
	}
	v := int(b[0] & 0x0f)
	for i := 1; i < n; i++ {
		v |= int(b[i]) << (4 + 8*(i-1))
	}
	return v, n
}

func FuzzPkgLength(f *testing.F) {
	for _, n := range []int{0, 62, 63, 4093, 4094, 1<<20 - 4, 1<<20 - 3, MaxPkgLength - 4, MaxPkgLength} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, n int) {
		b, err := PkgLength(n)
		if err != nil {
			if n >= 0 && n <= MaxPkgLength-4 {
				t.Fatalf("PkgLength(%d): %v", n, err)
			}
			return
		}
		v, size := decodePkgLength(b)
		if size != len(b) || v != n+len(b) {
			t.Fatalf("PkgLength(%d) = % x decodes to %d in %d bytes", n, b, v, size)
		}
		if len(b) > 1 && b[0]&0x30 != 0 {
			t.Fatalf("PkgLength(%d) = % x: bits 4-5 of the lead byte must be zero", n, b)
		}
		// Shortest form: the next shorter encoding could not have held it.
		limits := map[int]int{2: 0x3f, 3: 1<<12 - 1, 4: 1<<20 - 1}
		if lim, ok := limits[len(b)]; ok && n+len(b)-1 <= lim {
			t.Fatalf("PkgLength(%d) = % x is not the shortest encoding", n, b)
		}
	})
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{`\`, `\_SB.PCI0`, "^^FOO", "_S5", "A.B.C.D", "", "^", "ABCDE", "a", `\^A`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			return
		}
		enc := p.AML()
		// The canonical (padded) form parses to the same encoding.
		q, err := ParsePath(p.String())
		if err != nil {
			t.Fatalf("ParsePath(%q) ok but its String %q fails: %v", s, p.String(), err)
		}
		if string(q.AML()) != string(enc) {
			t.Fatalf("%q: % x, canonical %q: % x", s, enc, p.String(), q.AML())
		}
		for _, c := range enc {
			if c > 0x7f {
				t.Fatalf("%q encodes non-ASCII byte %#x", s, c)
			}
		}
	})
}

func FuzzInt(f *testing.F) {
	for _, v := range []uint64{0, 1, 2, 0xff, 0x100, 0xffff, 0x10000, 0xffffffff, 1 << 32, ^uint64(0)} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v uint64) {
		b := Int(v).AML()
		var got uint64
		switch b[0] {
		case zeroOp:
			got = 0
		case oneOp:
			got = 1
		case onesOp:
			got = ^uint64(0)
		case bytePrefix:
			got = uint64(b[1])
		case wordPrefix:
			got = uint64(binary.LittleEndian.Uint16(b[1:]))
		case dwordPrefix:
			got = uint64(binary.LittleEndian.Uint32(b[1:]))
		case qwordPrefix:
			got = binary.LittleEndian.Uint64(b[1:])
		default:
			t.Fatalf("Int(%#x) = % x: unknown prefix", v, b)
		}
		if got != v {
			t.Fatalf("Int(%#x) = % x decodes to %#x", v, b, got)
		}
		if b[0] == qwordPrefix && v <= 0xffffffff {
			t.Fatalf("Int(%#x) = % x is not the shortest form", v, b)
		}
	})
}

func FuzzParseEISAID(f *testing.F) {
	for _, s := range []string{"PNP0A03", "PNP0501", "QEMU0001", "pnp0a03", "", "ZZZFFFF"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseEISAID(s)
		if err != nil {
			return
		}
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], v)
		mfg := binary.BigEndian.Uint16(b[:2])
		if mfg>>15 != 0 {
			t.Fatalf("%q: reserved bit set in %#x", s, v)
		}
		letters := string([]byte{byte(mfg>>10&0x1f) + '@', byte(mfg>>5&0x1f) + '@', byte(mfg&0x1f) + '@'})
		if letters != s[:3] {
			t.Fatalf("%q: letters decode to %q", s, letters)
		}
	})
}

package aml

import (
	"encoding/binary"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Expected bytes below are derived from ACPI 6.5 chapter 20 (AML grammar) and
// §6.4 (resource descriptors) and were cross-checked against iasl 20200925.

func TestPkgLength(t *testing.T) {
	cases := []struct {
		body int
		want []byte
	}{
		{0, []byte{0x01}},
		{62, []byte{0x3f}},                          // largest one-byte: 62+1 = 0x3f
		{63, []byte{0x41, 0x04}},                    // 63+2 = 0x41
		{4093, []byte{0x4f, 0xff}},                  // 4093+2 = 0xfff
		{4094, []byte{0x81, 0x00, 0x01}},            // 4094+3 = 0x1001
		{1<<20 - 4, []byte{0x8f, 0xff, 0xff}},       // 0xfffff
		{1<<20 - 3, []byte{0xc1, 0x00, 0x00, 0x01}}, // 0x100001
		{MaxPkgLength - 4, []byte{0xcf, 0xff, 0xff, 0xff}},
	}
	for _, c := range cases {
		got, err := PkgLength(c.body)
		require.NoError(t, err, "body %d", c.body)
		assert.Equal(t, c.want, got, "body %d", c.body)
	}
	for _, bad := range []int{-1, MaxPkgLength - 3, 1 << 30} {
		_, err := PkgLength(bad)
		assert.ErrorIs(t, err, ErrTooLong, "body %d", bad)
	}
}

func TestPaths(t *testing.T) {
	cases := map[string][]byte{
		"_S5":        {'_', 'S', '5', '_'},
		`\_S5_`:      {'\\', '_', 'S', '5', '_'},
		`\_SB.PCI0`:  {'\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'},
		"^^FOO":      {'^', '^', 'F', 'O', 'O', '_'},
		`\`:          {'\\', 0x00},
		"A.B.C":      {0x2f, 3, 'A', '_', '_', '_', 'B', '_', '_', '_', 'C', '_', '_', '_'},
		`\_SB.P.Q.R`: {'\\', 0x2f, 4, '_', 'S', 'B', '_', 'P', '_', '_', '_', 'Q', '_', '_', '_', 'R', '_', '_', '_'},
	}
	for in, want := range cases {
		p, err := ParsePath(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, p.AML(), in)
	}
	assert.Equal(t, `\_SB_.PCI0`, MustPath(`\_SB.PCI0`).String())
	for _, bad := range []string{"", "^", "1ABC", "ABCDE", "a", "A..B", `\^A`, `^\A`, "A-B", "A.", ".A"} {
		_, err := ParsePath(bad)
		assert.ErrorIs(t, err, ErrBadName, "%q", bad)
	}
	assert.Panics(t, func() { Name("bad name", Zero) })
}

func TestInt(t *testing.T) {
	cases := []struct {
		v    Int
		want []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{2, []byte{0x0a, 0x02}},
		{0xff, []byte{0x0a, 0xff}},
		{0x100, []byte{0x0b, 0x00, 0x01}},
		{0xffff, []byte{0x0b, 0xff, 0xff}},
		{0x10000, []byte{0x0c, 0x00, 0x00, 0x01, 0x00}},
		{0xffffffff, []byte{0x0c, 0xff, 0xff, 0xff, 0xff}},
		{0x100000000, []byte{0x0e, 0, 0, 0, 0, 1, 0, 0, 0}},
		{0xfffffffffffffffe, []byte{0x0e, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{Ones, []byte{0xff}},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, c.v.AML(), "%#x", uint64(c.v))
	}
}

func TestDataObjects(t *testing.T) {
	assert.Equal(t, []byte{0x0d, 'a', 'b', 'c', 0}, String("abc").AML())
	assert.Equal(t, []byte{0x0d, 0}, String("").AML())
	assert.Panics(t, func() { String("a\x00b").AML() })
	assert.Panics(t, func() { String("\xe9").AML() })
	assert.Equal(t, []byte{0x11, 0x06, 0x0a, 0x03, 1, 2, 3}, Buffer{1, 2, 3}.AML())
	assert.Equal(t, []byte{0x11, 0x02, 0x00}, Buffer{}.AML())

	// The task's reference: Name(_S5_, Package(){5, 0}).
	s5 := Name("_S5_", Package(Int(5), Zero))
	assert.Equal(t, []byte{0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x05, 0x02, 0x0a, 0x05, 0x00}, s5.AML())

	// More than 255 elements needs VarPackageOp with a TermArg count.
	elems := make([]Term, 256)
	for i := range elems {
		elems[i] = Zero
	}
	vp := Package(elems...).AML()
	// body = 0b 00 01 (count 256) + 256 zeros = 259; 259+2 = 0x105.
	assert.Equal(t, []byte{0x13, 0x45, 0x10, 0x0b, 0x00, 0x01}, vp[:6])
	assert.Len(t, vp, 3+259)
}

func TestNamedObjects(t *testing.T) {
	sta := Method("_STA", 0, false, Return(Int(0x0f)))
	assert.Equal(t, []byte{0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f}, sta.AML())
	ser := Method("MTH1", 2, true)
	assert.Equal(t, []byte{0x14, 0x06, 'M', 'T', 'H', '1', 0x0a}, ser.AML())
	assert.Panics(t, func() { Method("BAD_", 8, false) })

	dev := Device("DEV0", Name("_UID", One))
	assert.Equal(t, []byte{0x5b, 0x82, 0x0b, 'D', 'E', 'V', '0', 0x08, '_', 'U', 'I', 'D', 0x01}, dev.AML())
	sc := Scope(`\_SB`)
	assert.Equal(t, []byte{0x10, 0x06, '\\', '_', 'S', 'B', '_'}, sc.AML())

	assert.Equal(t, []byte{0x70, 0x68, 0x60}, Store(Arg(0), Local(0)).AML())
	assert.Equal(t, []byte{0x7b, 0x60, 0x0a, 0xff, 0x00}, And(Local(0), Int(0xff), nil).AML())
	assert.Equal(t, []byte{0x7d, 0x60, 0x01, 0x61}, Or(Local(0), One, Local(1)).AML())
	assert.Equal(t, []byte{0x92, 0x93, 0x69, 0x01}, LNot(LEqual(Arg(1), One)).AML())
	assert.Equal(t, []byte{0x90, 0x01, 0x00}, LAnd(One, Zero).AML())
	assert.Equal(t, []byte{0x86, 'P', 'W', 'R', 'B', 0x0a, 0x80}, Notify(NamePath("PWRB"), Int(0x80)).AML())
	assert.Equal(t, []byte{0xa0, 0x04, 0x01, 0xa4, 0x00}, If(One, Return(Zero)).AML())
	assert.Equal(t, []byte{0xa1, 0x03, 0xa4, 0x01}, Else(Return(One)).AML())
	assert.Equal(t, []byte{0x01, 0x00}, Terms(One, Zero).AML())
	assert.Panics(t, func() { Arg(7).AML() })
	assert.Panics(t, func() { Local(8).AML() })
}

func TestEISAID(t *testing.T) {
	cases := map[string]uint32{
		"PNP0A03": 0x030ad041,
		"PNP0A08": 0x080ad041,
		"PNP0501": 0x0105d041,
		"PNP0C0F": 0x0f0cd041,
	}
	for id, want := range cases {
		got, err := ParseEISAID(id)
		require.NoError(t, err, id)
		assert.Equal(t, want, got, id)
	}
	assert.Equal(t, []byte{0x0c, 0x41, 0xd0, 0x05, 0x01}, EISAID("PNP0501").AML())
	for _, bad := range []string{"pnp0a03", "PNP0A0", "PNP0G03", "PN@0A03", "PNP0a03", "PNP0A030"} {
		_, err := ParseEISAID(bad)
		assert.ErrorIs(t, err, ErrBadName, bad)
	}
}

func TestResources(t *testing.T) {
	com := ResourceTemplate(IO(true, 0x3f8, 0x3f8, 0, 8), IRQNoFlags(4))
	assert.Equal(t, []byte{
		0x11, 0x10, 0x0a, 0x0d, // Buffer, PkgLength, size 13
		0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08, // IO Decode16
		0x22, 0x10, 0x00, // IRQNoFlags {4}
		0x79, 0x00, // End Tag
	}, com.AML())
	assert.Equal(t, []byte{0x47, 0x00, 0x60, 0x00, 0x60, 0x00, 0x01, 0x01}, IO(false, 0x60, 0x60, 1, 1).Descriptor())
	assert.Equal(t, []byte{0x4b, 0x60, 0x00, 0x01}, FixedIO(0x60, 1).Descriptor())
	assert.Equal(t, []byte{0x23, 0x20, 0x04, 0x18}, IRQ(false, true, true, 5, 10).Descriptor())
	assert.Equal(t, []byte{0x23, 0x02, 0x00, 0x01}, IRQ(true, false, false, 1).Descriptor())
	assert.Equal(t, []byte{0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0xc0, 0xfe, 0x00, 0x10, 0x00, 0x00},
		Memory32Fixed(true, 0xfec00000, 0x1000).Descriptor())
	assert.Equal(t, []byte{0x89, 0x06, 0x00, 0x0f, 0x01, 0x10, 0x00, 0x00, 0x00},
		Interrupt(true, true, true, true, 16).Descriptor())
	assert.Equal(t, []byte{
		0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, // WordBusNumber, producer, MinFixed|MaxFixed
		0x00, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00, 0x00, 0x00, 0x01,
	}, WordBusNumber(0, 0xff).Descriptor())
	assert.Equal(t, []byte{
		0x87, 0x17, 0x00, 0x00, 0x0c, 0x03, // DWordMemory, Cacheable ReadWrite
		0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff, 0xbf, 0xfe, 0, 0, 0, 0, 0, 0, 0xc0, 0x3e,
	}, DWordMemory(MemCacheable, true, 0xc0000000, 0xfebfffff).Descriptor())
	assert.Len(t, QWordMemory(MemPrefetchable, false, 1<<39, 1<<40-1).Descriptor(), 46)
	assert.Len(t, DWordIO(0xd00, 0xffff).Descriptor(), 26)
	assert.Len(t, WordIO(0, 0xcf7).Descriptor(), 16)

	assert.Panics(t, func() { IRQNoFlags(16) })
	assert.Panics(t, func() { FixedIO(0x400, 1) })
	assert.Panics(t, func() { Interrupt(true, true, false, false) })
	assert.Panics(t, func() { AddressSpace{Max: 0x10000}.Word() })
}

// TestGolden builds the program of testdata/golden.asl and compares it with
// what iasl compiled from it.
func TestGolden(t *testing.T) {
	golden, err := os.ReadFile("testdata/golden.aml")
	require.NoError(t, err)
	require.Greater(t, len(golden), 36)
	require.Equal(t, uint32(len(golden)), binary.LittleEndian.Uint32(golden[4:8]))

	body := Terms(
		Name(`\_S5`, Package(Int(5), Zero)),
		Scope(`\_SB`,
			Device("COM1",
				Name("_HID", EISAID("PNP0501")),
				Name("_UID", One),
				Name("_CRS", ResourceTemplate(IO(true, 0x3f8, 0x3f8, 0, 8), IRQNoFlags(4))),
			),
			Device("PEVT",
				Name("_HID", String("QEMU0001")),
				Name("_CRS", ResourceTemplate(IO(true, 0x505, 0x505, 1, 1))),
				Method("_STA", 0, false, Return(Int(0x0f))),
			),
			Device("PCI0",
				Name("_HID", EISAID("PNP0A08")),
				Name("_CID", EISAID("PNP0A03")),
				Name("_CRS", ResourceTemplate(
					WordBusNumber(0, 0xff),
					WordIO(0, 0xcf7),
					DWordIO(0xd00, 0xffff),
					DWordMemory(MemNonCacheable, true, 0xc0000000, 0xfebfffff),
					QWordMemory(MemPrefetchable, true, 0x8000000000, 0xffffffffff),
					Memory32Fixed(true, 0xfec00000, 0x1000),
					IRQ(false, true, true, 5, 10),
					Interrupt(true, false, false, false, 16, 17),
					FixedIO(0x60, 1),
				)),
				Name("INTS", Package(Int(0x1234), Int(0x12345678), Int(0x123456789a), Ones,
					String("abc"), Buffer{1, 2, 3})),
				Name("LNKS", Package(
					Package(Int(0xffff), Zero, NamePath("^PEVT"), Zero),
					Package(Int(0x1ffff), One, NamePath(`\_SB.PEVT`), Zero),
				)),
				Method("MTH1", 2, true,
					Store(Arg(0), Local(0)),
					If(LEqual(Arg(1), Int(0x10)), Return(One)),
					Else(Return(And(Local(0), Int(0xff), nil))),
				),
			),
		),
	).AML()
	assert.Equal(t, golden[36:], body)
}

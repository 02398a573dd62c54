package elfseg

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/boot/internal/fakemem"
	"github.com/vmmdev/vmm/internal/elfbuild"
)

func sample(class elf.Class) []byte {
	notes := append(elfbuild.Note("GNU", 3, []byte{1, 2, 3, 4, 5}), elfbuild.Note("Xen", 18, []byte{0, 0, 0x10, 0})...)
	return elfbuild.Build(class, elf.EM_X86_64, 0xffffffff81000000, []elfbuild.Segment{
		{Type: elf.PT_LOAD, Vaddr: 0xffffffff81000000, Paddr: 0x1000000, Data: []byte("text"), Memsz: 0x2000},
		{Type: elf.PT_NOTE, Data: notes, Align: 4},
		{Type: elf.PT_LOAD, Vaddr: 0x200000, Paddr: 0x200000, Data: []byte("data")},
		{Type: elf.PT_GNU_STACK},
	})
}

func TestParse64(t *testing.T) {
	f, err := Parse(sample(elf.ELFCLASS64))
	require.NoError(t, err)
	require.Equal(t, elf.ELFCLASS64, f.Class)
	require.Equal(t, elf.EM_X86_64, f.Machine)
	require.Equal(t, uint64(0xffffffff81000000), f.Entry)
	require.Len(t, f.Progs, 4)
	loads := f.Loads()
	require.Len(t, loads, 2)
	require.Equal(t, uint64(0x1000000), loads[0].Paddr)
	require.Equal(t, []byte("text"), loads[0].Data)
	require.Equal(t, uint64(0x2000), loads[0].Memsz)
	lo, hi, ok := Extent(loads)
	require.True(t, ok)
	require.Equal(t, uint64(0x200000), lo)
	require.Equal(t, uint64(0x1002000), hi)

	notes, err := f.Notes()
	require.NoError(t, err)
	require.Equal(t, []Note{{"GNU", 3, []byte{1, 2, 3, 4, 5}}, {"Xen", 18, []byte{0, 0, 0x10, 0}}}, notes)
}

func TestParse32(t *testing.T) {
	f, err := Parse(sample(elf.ELFCLASS32))
	require.NoError(t, err)
	require.Equal(t, elf.ELFCLASS32, f.Class)
	require.Equal(t, uint64(0x81000000), f.Entry, "truncated to 32 bits by the 32-bit header")
	require.Equal(t, uint64(0x1000000), f.Loads()[0].Paddr)
	notes, err := f.Notes()
	require.NoError(t, err)
	require.Len(t, notes, 2)
}

func TestNotes8Aligned(t *testing.T) {
	// An 8-aligned note: the descriptor starts at an 8-byte boundary.
	n := make([]byte, 12+4+8)
	binary.LittleEndian.PutUint32(n, 4)
	binary.LittleEndian.PutUint32(n[4:], 8)
	binary.LittleEndian.PutUint32(n[8:], 5)
	copy(n[12:], "GNU\x00")
	copy(n[16:], "abcdefgh")
	f, err := Parse(elfbuild.Build(elf.ELFCLASS64, elf.EM_X86_64, 0, []elfbuild.Segment{{Type: elf.PT_NOTE, Data: n, Align: 8}}))
	require.NoError(t, err)
	notes, err := f.Notes()
	require.NoError(t, err)
	require.Equal(t, []Note{{"GNU", 5, []byte("abcdefgh")}}, notes)
}

func TestParseErrors(t *testing.T) {
	le := binary.LittleEndian
	for name, tc := range map[string]struct {
		mod  func([]byte) []byte
		want error
	}{
		"empty":          {func([]byte) []byte { return nil }, ErrNotELF},
		"bad magic":      {func(b []byte) []byte { b[1] = 'X'; return b }, ErrNotELF},
		"class":          {func(b []byte) []byte { b[elf.EI_CLASS] = 3; return b }, ErrUnsupported},
		"big endian":     {func(b []byte) []byte { b[elf.EI_DATA] = 2; return b }, ErrUnsupported},
		"short header":   {func(b []byte) []byte { return b[:40] }, ErrTruncated},
		"not exec":       {func(b []byte) []byte { le.PutUint16(b[16:], 3); return b }, ErrUnsupported},
		"arm":            {func(b []byte) []byte { le.PutUint16(b[18:], uint16(elf.EM_AARCH64)); return b }, ErrUnsupported},
		"no phdrs":       {func(b []byte) []byte { le.PutUint16(b[56:], 0); return b }, ErrMalformed},
		"pn_xnum":        {func(b []byte) []byte { le.PutUint16(b[56:], 0xffff); return b }, ErrUnsupported},
		"small phent":    {func(b []byte) []byte { le.PutUint16(b[54:], 8); return b }, ErrMalformed},
		"phdrs beyond":   {func(b []byte) []byte { le.PutUint64(b[32:], 1<<62); return b }, ErrTruncated},
		"segment cut":    {func(b []byte) []byte { return b[:len(b)-14] }, ErrTruncated},
		"filesz>memsz":   {func(b []byte) []byte { le.PutUint64(b[64+40:], 1); return b }, ErrMalformed},
		"wraps":          {func(b []byte) []byte { le.PutUint64(b[64+24:], ^uint64(0)); return b }, ErrMalformed},
		"offset huge":    {func(b []byte) []byte { le.PutUint64(b[64+8:], ^uint64(0)); return b }, ErrTruncated},
		"note overrun":   {func(b []byte) []byte { le.PutUint32(b[noteOff(b):], 100); return b }, ErrMalformed},
		"note desc huge": {func(b []byte) []byte { le.PutUint32(b[noteOff(b)+4:], 0xffffffff); return b }, ErrMalformed},
	} {
		t.Run(name, func(t *testing.T) {
			data := tc.mod(sample(elf.ELFCLASS64))
			f, err := Parse(data)
			if err == nil {
				_, err = f.Notes()
			}
			require.ErrorIs(t, err, tc.want)
			f, err = ParseFrom(bytes.NewReader(data), int64(len(data)))
			if err == nil {
				_, err = f.Notes()
			}
			require.ErrorIs(t, err, tc.want, "ParseFrom")
		})
	}
}

// noteOff is the file offset of the sample's note segment (program header 1).
func noteOff(b []byte) int { return int(binary.LittleEndian.Uint64(b[64+56+8:])) }

func TestLoad(t *testing.T) {
	f, err := Parse(sample(elf.ELFCLASS64))
	require.NoError(t, err)
	mem := fakemem.New(32 << 20)
	ones := make([]byte, 0x2000)
	for i := range ones {
		ones[i] = 0xff
	}
	_, _ = mem.WriteAt(ones, 0x1000000) // stale bytes where the bss goes
	require.NoError(t, Load(mem, f.Loads(), bytes.NewReader(sample(elf.ELFCLASS64))))
	require.Equal(t, []byte("text"), mem.Read(0x1000000, 4))
	require.False(t, mem.Dirty(0x1000004, 0x2000-4), "bss cleared")
	require.Equal(t, []byte("data"), mem.Read(0x200000, 4))

	err = Load(fakemem.New(16<<20), f.Loads(), bytes.NewReader(sample(elf.ELFCLASS64)))
	require.ErrorIs(t, err, fakemem.ErrOutOfRange)
	require.ErrorContains(t, err, "0x1000000")
}

// ParseFrom reads the headers and notes alone: the loads stay in the file,
// and Load copies them from there.
func TestParseFrom(t *testing.T) {
	data := sample(elf.ELFCLASS64)
	whole, err := Parse(data)
	require.NoError(t, err)
	f, err := ParseFrom(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	require.Len(t, f.Progs, len(whole.Progs))
	for i, p := range f.Progs {
		w := whole.Progs[i]
		if p.Type == elf.PT_LOAD {
			require.Nil(t, p.Data, "load %d read onto the heap", i)
			w.Data = nil
		}
		require.Equal(t, w, p)
	}
	notes, err := f.Notes()
	require.NoError(t, err)
	require.Len(t, notes, 2)
	mem := fakemem.New(32 << 20)
	require.NoError(t, Load(mem, f.Loads(), bytes.NewReader(data)))
	require.Equal(t, []byte("text"), mem.Read(0x1000000, 4))
	require.Equal(t, []byte("data"), mem.Read(0x200000, 4))
}

func FuzzParse(f *testing.F) {
	f.Add(sample(elf.ELFCLASS64))
	f.Add(sample(elf.ELFCLASS32))
	f.Add(sample(elf.ELFCLASS64)[:100])
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		from, fromErr := ParseFrom(bytes.NewReader(data), int64(len(data)))
		if (err == nil) != (fromErr == nil) {
			t.Fatalf("Parse: %v, ParseFrom: %v", err, fromErr)
		}
		if err != nil {
			return
		}
		if len(from.Progs) != len(file.Progs) {
			t.Fatalf("ParseFrom: %d program headers, Parse %d", len(from.Progs), len(file.Progs))
		}
		for _, p := range file.Progs {
			if (p.Type == elf.PT_LOAD || p.Type == elf.PT_NOTE) && uint64(len(p.Data)) != p.Filesz {
				t.Fatalf("segment data %d bytes, filesz %d", len(p.Data), p.Filesz)
			}
		}
		notes, err := file.Notes()
		if err != nil {
			return
		}
		for _, n := range notes {
			if len(n.Desc) > len(data) {
				t.Fatalf("note desc of %d bytes from %d", len(n.Desc), len(data))
			}
		}
	})
}

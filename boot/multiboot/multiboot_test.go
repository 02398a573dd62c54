package multiboot

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/boot"
	"github.com/vmmdev/vmm/boot/internal/elfseg"
	"github.com/vmmdev/vmm/boot/internal/fakemem"
	"github.com/vmmdev/vmm/firmware/e820"
	"github.com/vmmdev/vmm/internal/elfbuild"
	"github.com/vmmdev/vmm/layout"
)

const mib = 1 << 20

var le = binary.LittleEndian

// header returns a multiboot header with flags and, if given, address fields.
func header(flags uint32, addr ...uint32) []byte {
	b := make([]byte, 12+4*len(addr))
	le.PutUint32(b, headerMagic)
	le.PutUint32(b[4:], flags)
	le.PutUint32(b[8:], -(headerMagic + flags))
	for i, a := range addr {
		le.PutUint32(b[12+4*i:], a)
	}
	return b
}

// elfTextOff is where elfbuild puts elfKernel's text: after the 52-byte
// header and two 32-byte program headers, 16-byte aligned.
const elfTextOff = 0x80

// elfKernel is a higher-half ELF32 kernel: text linked at 0xc0100000, loaded
// at 1 MiB, with the multiboot header 16 bytes into the text and a bss.
func elfKernel(flags uint32) []byte {
	text := make([]byte, 0x200)
	copy(text[16:], header(flags))
	copy(text[0x40:], "entry code")
	return elfbuild.Build(elf.ELFCLASS32, elf.EM_386, 0xc0100040, []elfbuild.Segment{
		{Type: elf.PT_LOAD, Vaddr: 0xc0100000, Paddr: mib, Data: text, Memsz: 0x3000},
		{Type: elf.PT_LOAD, Vaddr: 0xc0200000, Paddr: 2 * mib, Data: []byte("data")},
	})
}

// aoutKernel is a flat binary using the address fields: the header at file
// offset 0x20 describes load address 0x100000, the file loads to the end,
// bss to 0x104000, entry 0x100100.
func aoutKernel() []byte {
	b := make([]byte, 0x1000)
	copy(b[0x20:], header(flagPageAlign|flagMemInfo|flagAddress, 0x100020, 0x100000, 0, 0x104000, 0x100100))
	copy(b[0x100:], "start")
	return b
}

func TestParseELF(t *testing.T) {
	k, err := Parse(elfKernel(flagPageAlign | flagMemInfo | flagVideo))
	require.NoError(t, err)
	require.Equal(t, elfTextOff+16, k.HeaderOffset, "header in the first segment's file data")
	require.Equal(t, uint32(0x100040), k.Entry, "virtual entry translated to physical")
	require.Len(t, k.Segments, 2)
	require.Equal(t, uint64(mib), k.Segments[0].Addr)
	require.Equal(t, uint64(0x3000), k.Segments[0].MemSize)
	require.Equal(t, uint64(2*mib+4), k.end)

	// ELF64 multiboot kernels load the same way.
	text := append(make([]byte, 8), header(0)...)
	k, err = Parse(elfbuild.Build(elf.ELFCLASS64, elf.EM_X86_64, 0x100000, []elfbuild.Segment{
		{Type: elf.PT_LOAD, Vaddr: 0x100000, Paddr: 0x100000, Data: text},
	}))
	require.NoError(t, err)
	require.Equal(t, uint32(0x100000), k.Entry)
}

func TestParseAddressFields(t *testing.T) {
	data := aoutKernel()
	k, err := Parse(data)
	require.NoError(t, err)
	require.Equal(t, 0x20, k.HeaderOffset)
	require.Equal(t, uint32(0x100100), k.Entry)
	require.Equal(t, []Segment{{Addr: 0x100000, Data: data, MemSize: 0x4000}}, k.Segments)

	// load_end_addr cuts the file; no bss; load_addr before the file start
	// of the header by 0x20 means the image starts at file offset 0.
	copy(data[0x20:], header(flagAddress, 0x200020, 0x200000, 0x200800, 0, 0x200100))
	k, err = Parse(data)
	require.NoError(t, err)
	require.Equal(t, []Segment{{Addr: 0x200000, Data: data[:0x800], MemSize: 0x800}}, k.Segments)

	// Address fields win over ELF (as GRUB does).
	e := elfKernel(flagAddress)
	off := elfTextOff + 16
	copy(e[off:], header(flagAddress, 0x300000+uint32(off), 0x300000, 0, 0, 0x300000))
	k, err = Parse(e)
	require.NoError(t, err)
	require.Equal(t, []Segment{{Addr: 0x300000, Data: e, MemSize: uint64(len(e))}}, k.Segments)
}

func TestParseErrors(t *testing.T) {
	at := func(flags uint32, addr ...uint32) []byte {
		b := make([]byte, 0x1000)
		copy(b[0x20:], header(flags, addr...))
		return b
	}
	badSum := aoutKernel()
	le.PutUint32(badSum[0x28:], 0)
	late := make([]byte, 0x3000)
	copy(late[0x2000:], header(0))
	crossing := make([]byte, 0x3000)
	copy(crossing[0x1ff0:], header(flagAddress, 0x101ff0, 0x100000, 0, 0, 0x100000))
	unaligned := make([]byte, 0x100)
	copy(unaligned[2:], header(0))
	for name, tc := range map[string]struct {
		data []byte
		want error
	}{
		"empty":             {nil, ErrNoHeader},
		"bad checksum":      {badSum, ErrNoHeader},
		"beyond 8 KiB":      {late, ErrNoHeader},
		"unaligned":         {unaligned, ErrNoHeader},
		"crosses 8 KiB":     {crossing, ErrMalformed},
		"unknown required":  {at(1 << 5), ErrUnsupported},
		"not ELF, no addrs": {at(0), elfseg.ErrNotELF},
		"address cut":       {at(flagAddress, 1)[:0x30], ErrTruncated},
		"load after header": {at(flagAddress, 0x100020, 0x100040, 0, 0, 0x100040), ErrMalformed},
		"header too early":  {at(flagAddress, 0x100100, 0x100000, 0, 0, 0x100000), ErrMalformed},
		"load_end < load":   {at(flagAddress, 0x100020, 0x100000, 0x1000, 0, 0x100000), ErrMalformed},
		"file too short":    {at(flagAddress, 0x100020, 0x100000, 0x200000, 0, 0x100000), ErrTruncated},
		"bss < load_end":    {at(flagAddress, 0x100020, 0x100000, 0x100800, 0x100400, 0x100000), ErrMalformed},
		"entry outside":     {at(flagAddress, 0x100020, 0x100000, 0, 0, 0x90000), ErrMalformed},
		"ELF truncated":     {elfKernel(0)[:0x100], ErrTruncated},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(tc.data)
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func TestLoad(t *testing.T) {
	const memSize = 64 * mib
	k, err := Parse(elfKernel(flagPageAlign | flagMemInfo))
	require.NoError(t, err)
	mem := fakemem.New(memSize)
	memMap := e820.Map(memSize)
	mods := [][]byte{[]byte("first module"), make([]byte, 5000)}
	mods[1][4999] = 7
	entry, err := k.Load(mem, memSize, "root=/dev/sda", mods, memMap)
	require.NoError(t, err)
	require.Equal(t, boot.Entry{Mode: boot.Protected32, IP: 0x100040, RAX: 0x2badb002, RBX: layout.BootInfo}, entry)

	require.Equal(t, []byte("entry code"), mem.Read(0x100040, 10))
	require.False(t, mem.Dirty(mib+0x200, 0x3000-0x200), "bss clear")
	require.Equal(t, []byte("root=/dev/sda\x00"), mem.Read(layout.Cmdline, 14))

	mbi := mem.Read(layout.BootInfo, 4096)
	require.Equal(t, uint32(1|4|8|64|512), le.Uint32(mbi[0:]), "flags")
	require.Equal(t, uint32(layout.EBDA>>10), le.Uint32(mbi[4:]), "mem_lower")
	require.Equal(t, uint32((memSize-mib)>>10), le.Uint32(mbi[8:]), "mem_upper")
	require.Equal(t, uint32(layout.Cmdline), le.Uint32(mbi[16:]))
	require.Equal(t, []byte("vmm\x00"), mem.Read(uint64(le.Uint32(mbi[64:])), 4), "boot loader name")

	// Memory map entries with their size field.
	require.Equal(t, uint32(24*len(memMap)), le.Uint32(mbi[44:]))
	mmap := uint64(le.Uint32(mbi[48:]))
	for i, e := range memMap {
		m := mem.Read(mmap+uint64(24*i), 24)
		require.Equal(t, uint32(20), le.Uint32(m))
		require.Equal(t, e.Addr, le.Uint64(m[4:]))
		require.Equal(t, e.Size, le.Uint64(m[12:]))
		require.Equal(t, uint32(e.Type), le.Uint32(m[20:]))
	}

	// Modules page-aligned above the kernel (which ends at 2 MiB + 4).
	require.Equal(t, uint32(2), le.Uint32(mbi[20:]))
	list := mem.Read(uint64(le.Uint32(mbi[24:])), 32)
	start0, end0 := le.Uint32(list[0:]), le.Uint32(list[4:])
	start1, end1 := le.Uint32(list[16:]), le.Uint32(list[20:])
	require.Equal(t, uint32(2*mib+4096), start0)
	require.Equal(t, start0+12, end0)
	require.Equal(t, uint32(2*mib+8192), start1)
	require.Equal(t, start1+5000, end1)
	require.Equal(t, []byte("first module"), mem.Read(uint64(start0), 12))
	require.Equal(t, byte(7), mem.Read(uint64(end1-1), 1)[0])
	require.Equal(t, []byte{0}, mem.Read(uint64(le.Uint32(list[8:])), 1), "empty module string")
	require.Equal(t, le.Uint32(list[8:]), le.Uint32(list[24:]))
}

func TestLoadAddressFields(t *testing.T) {
	k, err := Parse(aoutKernel())
	require.NoError(t, err)
	mem := fakemem.New(16 * mib)
	entry, err := k.Load(mem, 16*mib, "", nil, e820.Map(16*mib))
	require.NoError(t, err)
	require.Equal(t, uint64(0x100100), entry.IP)
	require.Equal(t, []byte("start"), mem.Read(0x100100, 5))
	require.Zero(t, le.Uint32(mem.Read(layout.BootInfo+20, 4)), "no modules")
}

func TestCheckErrors(t *testing.T) {
	k, err := Parse(elfKernel(0))
	require.NoError(t, err)
	require.NoError(t, k.Check(3*mib, "", []uint64{mib - 4096}, 3))
	require.ErrorIs(t, k.Check(3*mib, "", []uint64{mib - 4095}, 3), ErrModulesTooLarge)
	require.ErrorIs(t, k.Check(3*mib, "", []uint64{mib / 2, mib / 2}, 3), ErrModulesTooLarge)
	require.ErrorIs(t, k.Check(2*mib, "", nil, 3), ErrNotEnoughMemory)
	require.ErrorIs(t, k.Check(64*mib, string(make([]byte, layout.CmdlineMax)), nil, 3), ErrCmdlineTooLong)
	require.ErrorIs(t, k.Check(64*mib, "", make([]uint64, 300), 3), ErrTooManyModules)

	mem := fakemem.New(64 * mib)
	_, err = k.Load(mem, 64*mib, "", [][]byte{make([]byte, 80*mib)}, e820.Map(64*mib))
	require.ErrorIs(t, err, ErrModulesTooLarge)
	require.Zero(t, mem.Writes)
	_, err = k.Load(fakemem.New(mib), 64*mib, "", nil, e820.Map(64*mib))
	require.ErrorIs(t, err, fakemem.ErrOutOfRange)
}

// lowKernel is an ELF kernel with one segment at addr of size bytes,
// entered at its start, like kvm-unit-tests' realmode.flat at 0x8000.
func lowKernel(addr, size uint64) []byte {
	text := make([]byte, 0x40)
	copy(text, header(flagMemInfo))
	return elfbuild.Build(elf.ELFCLASS32, elf.EM_386, addr, []elfbuild.Segment{
		{Type: elf.PT_LOAD, Vaddr: addr, Paddr: addr, Data: text, Memsz: size},
	})
}

func TestLoadBelow1MiB(t *testing.T) {
	const memSize = 16 * mib
	k, err := Parse(lowKernel(0x8000, 0x4000))
	require.NoError(t, err)
	mem := fakemem.New(memSize)
	cmdline := CommandLine("/tmp/realmode.flat", "-v")
	entry, err := k.Load(mem, memSize, cmdline, [][]byte{[]byte("module")}, e820.Map(memSize))
	require.NoError(t, err)
	require.Equal(t, uint64(0x8000), entry.IP)
	require.Equal(t, header(flagMemInfo), mem.Read(0x8000, 12))
	require.Equal(t, "/tmp/realmode.flat -v\x00", string(mem.Read(layout.Cmdline, uint64(len(cmdline)+1))))
	// Modules go above 1 MiB even when the kernel ends below it.
	list := mem.Read(uint64(le.Uint32(mem.Read(layout.BootInfo+24, 4))), 16)
	require.Equal(t, uint32(layout.HighMemory), le.Uint32(list))
}

func TestCommandLine(t *testing.T) {
	require.Equal(t, "/boot/k a b", CommandLine("/boot/k", "a b"))
	require.Equal(t, "/boot/k", CommandLine("/boot/k", ""))
}

// TestReservedCollision: a segment over anything vmm writes is refused with
// one line naming the segment and what it hits; next to them it loads.
func TestReservedCollision(t *testing.T) {
	const memSize = 16 * mib
	for _, tc := range []struct {
		addr, size uint64
		what       string
	}{
		{0x400, 0x200, "the boot GDT and IDT at [0x500, 0x528)"},
		{0x5000, 0x1800, "the multiboot information at [0x6000, 0x7000)"},
		{0x1f000, 0x1008, "the command line at [0x20000, 0x20007)"},
		{0x90000, 0x10000, "the BIOS area"},
		{0xf0000, 0x20000, "the BIOS area"},
	} {
		k, err := Parse(lowKernel(tc.addr, tc.size))
		require.NoError(t, err)
		err = k.Check(memSize, "k args", nil, 4)
		require.ErrorIs(t, err, ErrReserved, "%#x", tc.addr)
		require.ErrorContains(t, err, fmt.Sprintf("segment [%#x, %#x) overlaps %s", tc.addr, tc.addr+tc.size, tc.what))
		require.NotContains(t, err.Error(), "\n")
		_, err = k.Load(fakemem.New(memSize), memSize, "k args", nil, e820.Map(memSize))
		require.ErrorIs(t, err, ErrReserved)
	}
	for _, ok := range []struct{ addr, size uint64 }{
		{0, 0x500}, {0x528, 0x6000 - 0x528}, {0x7000, 0x20000 - 0x7000}, {0x20007, 0x9fc00 - 0x20007}, {layout.HighMemory, 0x1000},
	} {
		k, err := Parse(lowKernel(ok.addr, ok.size))
		require.NoError(t, err)
		require.NoError(t, k.Check(memSize, "k args", nil, 4), "%#x", ok.addr)
	}
	require.Equal(t, "the command line", Reserved(6)[2].What)
	require.Equal(t, uint64(layout.Cmdline+7), Reserved(6)[2].End)
}

func TestMemSizes(t *testing.T) {
	lower, upper := memSizes(e820.Map(4096 * mib))
	require.Equal(t, uint32(639), lower)
	require.Equal(t, uint32((layout.MMIOHoleStart-mib)>>10), upper, "up to the hole")
	// RAM split in adjacent entries still counts as one run.
	lower, upper = memSizes([]e820.Entry{
		{Addr: 0, Size: 0x1000, Type: e820.RAM},
		{Addr: 0x1000, Size: 0x100000, Type: e820.RAM},
		{Addr: mib, Size: mib, Type: e820.RAM},
		{Addr: 2 * mib, Size: mib, Type: e820.RAM},
	})
	require.Equal(t, uint32(640), lower)
	require.Equal(t, uint32(2048), upper)
}

func FuzzParse(f *testing.F) {
	f.Add(elfKernel(flagMemInfo))
	f.Add(aoutKernel()[:0x200])
	f.Add(header(flagAddress, 0x100000, 0x100000, 0, 0x101000, 0x100000))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := Parse(data)
		if err != nil {
			return
		}
		for _, s := range k.Segments {
			if uint64(len(s.Data)) > s.MemSize {
				t.Fatalf("segment %#x: %d bytes of %d", s.Addr, len(s.Data), s.MemSize)
			}
		}
		const memSize = 64 * mib
		if _, err := k.Load(fakemem.New(memSize), memSize, "x", [][]byte{{1}}, e820.Map(memSize)); err == nil && k.end > memSize {
			t.Fatalf("loaded a kernel ending at %#x into %#x bytes", k.end, memSize)
		}
	})
}

package pvh

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"github.com/vmmdev/vmm/internal/testenv"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/boot"
	"github.com/vmmdev/vmm/boot/internal/fakemem"
	"github.com/vmmdev/vmm/firmware/e820"
	"github.com/vmmdev/vmm/internal/elfbuild"
	"github.com/vmmdev/vmm/layout"
)

const mib = 1 << 20

var le = binary.LittleEndian

// vmlinux builds an ELF shaped like Linux's vmlinux: text at 16 MiB, a bss,
// and a note segment with a GNU note and the PVH entry note.
func vmlinux(class elf.Class, entryDesc []byte) []byte {
	notes := elfbuild.Note("GNU", 3, []byte("build-id"))
	if entryDesc != nil {
		notes = append(notes, elfbuild.Note("Xen", xenNotePhys32Entry, entryDesc)...)
	}
	return elfbuild.Build(class, elf.EM_X86_64, 0xffffffff81000000, []elfbuild.Segment{
		{Type: elf.PT_LOAD, Vaddr: 0xffffffff81000000, Paddr: 16 * mib, Data: []byte("kernel text")},
		{Type: elf.PT_LOAD, Vaddr: 0xffffffff82000000, Paddr: 17 * mib, Data: []byte("data"), Memsz: mib},
		{Type: elf.PT_NOTE, Data: notes, Align: 4},
	})
}

func entry8(v uint64) []byte { b := make([]byte, 8); le.PutUint64(b, v); return b }
func entry4(v uint32) []byte { b := make([]byte, 4); le.PutUint32(b, v); return b }

func TestParse(t *testing.T) {
	k, err := Parse(vmlinux(elf.ELFCLASS64, entry8(0x1000123)))
	require.NoError(t, err)
	require.Equal(t, uint32(0x1000123), k.Entry)
	require.Equal(t, []Segment{
		{Addr: 16 * mib, Data: []byte("kernel text"), MemSize: 11},
		{Addr: 17 * mib, Data: []byte("data"), MemSize: mib},
	}, k.Segments)

	k, err = Parse(vmlinux(elf.ELFCLASS32, entry4(0x1000040)))
	require.NoError(t, err)
	require.Equal(t, uint32(0x1000040), k.Entry)
}

func TestParseErrors(t *testing.T) {
	low := elfbuild.Build(elf.ELFCLASS64, elf.EM_X86_64, 0, []elfbuild.Segment{
		{Type: elf.PT_LOAD, Paddr: 0x7000, Data: []byte("x")},
		{Type: elf.PT_NOTE, Data: elfbuild.Note("Xen", xenNotePhys32Entry, entry4(0x7000))},
	})
	noLoad := elfbuild.Build(elf.ELFCLASS64, elf.EM_X86_64, 0, []elfbuild.Segment{
		{Type: elf.PT_NOTE, Data: elfbuild.Note("Xen", xenNotePhys32Entry, entry4(0x7000))},
	})
	full := vmlinux(elf.ELFCLASS64, entry8(0x1000000))
	for name, tc := range map[string]struct {
		data []byte
		want error
	}{
		"not ELF":      {[]byte("MZ not an elf file"), ErrNotELF},
		"no note":      {vmlinux(elf.ELFCLASS64, nil), ErrNoPVHNote},
		"odd note":     {vmlinux(elf.ELFCLASS64, []byte{1, 2}), ErrMalformed},
		"entry > 4G":   {vmlinux(elf.ELFCLASS64, entry8(1<<32)), ErrUnsupported},
		"truncated":    {full[:len(full)-30], ErrTruncated},
		"below 1 MiB":  {low, ErrUnsupported},
		"no segments":  {noLoad, ErrMalformed},
		"header only":  {full[:64], ErrTruncated},
		"32-bit short": {vmlinux(elf.ELFCLASS32, entry4(1))[:40], ErrTruncated},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(tc.data)
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func TestLoad(t *testing.T) {
	const memSize = 64 * mib
	k, err := Parse(vmlinux(elf.ELFCLASS64, entry8(0x1000123)))
	require.NoError(t, err)
	mem := fakemem.New(memSize)
	junk := []byte{0xee, 0xee, 0xee, 0xee}
	_, _ = mem.WriteAt(junk, 17*mib+100) // inside the bss
	initrd := []byte("initramfs")
	memMap := e820.Map(memSize)
	entry, err := k.Load(mem, memSize, "console=hvc0", initrd, memMap, 0xe0000)
	require.NoError(t, err)
	require.Equal(t, boot.Entry{Mode: boot.Protected32, IP: 0x1000123, RBX: layout.BootInfo}, entry)

	require.Equal(t, []byte("kernel text"), mem.Read(16*mib, 11))
	require.Equal(t, []byte("data"), mem.Read(17*mib, 4))
	require.False(t, mem.Dirty(17*mib+4, mib-4), "bss cleared")
	require.Equal(t, []byte("console=hvc0\x00"), mem.Read(layout.Cmdline, 13))

	si := mem.Read(layout.BootInfo, 4096)
	require.Equal(t, uint32(0x336ec578), le.Uint32(si[0:]), "magic")
	require.Equal(t, uint32(1), le.Uint32(si[4:]), "version")
	require.Equal(t, uint32(0), le.Uint32(si[8:]), "flags")
	require.Equal(t, uint32(1), le.Uint32(si[12:]), "nr_modules")
	modlist := le.Uint64(si[16:])
	require.Equal(t, uint64(layout.Cmdline), le.Uint64(si[24:]))
	require.Equal(t, uint64(0xe0000), le.Uint64(si[32:]), "rsdp")
	memmap := le.Uint64(si[40:])
	require.Equal(t, uint32(len(memMap)), le.Uint32(si[48:]))

	// Module 0 is the initrd, page-aligned at the top of RAM.
	mod := mem.Read(modlist, 32)
	addr, size := le.Uint64(mod), le.Uint64(mod[8:])
	require.Equal(t, uint64(memSize-4096), addr)
	require.Equal(t, uint64(len(initrd)), size)
	require.Zero(t, le.Uint64(mod[16:]), "no module cmdline")
	require.Equal(t, initrd, mem.Read(addr, size))

	for i, e := range memMap {
		m := mem.Read(memmap+uint64(24*i), 24)
		require.Equal(t, e.Addr, le.Uint64(m))
		require.Equal(t, e.Size, le.Uint64(m[8:]))
		require.Equal(t, uint32(e.Type), le.Uint32(m[16:]))
		require.Zero(t, le.Uint32(m[20:]))
	}
	// The structures stay inside the BootInfo page.
	require.LessOrEqual(t, memmap+uint64(24*len(memMap)), uint64(layout.BootInfo+4096))
	require.GreaterOrEqual(t, modlist, uint64(layout.BootInfo+56))
}

func TestLoadNoInitrd(t *testing.T) {
	k, err := Parse(vmlinux(elf.ELFCLASS64, entry8(0x1000000)))
	require.NoError(t, err)
	mem := fakemem.New(32 * mib)
	_, err = k.Load(mem, 32*mib, "", nil, e820.Map(32*mib), 0)
	require.NoError(t, err)
	si := mem.Read(layout.BootInfo, 56)
	require.Zero(t, le.Uint32(si[12:]), "nr_modules")
	require.Zero(t, le.Uint64(si[16:]), "modlist_paddr")
	require.Zero(t, le.Uint64(si[32:]), "rsdp")
	require.Equal(t, []byte{0}, mem.Read(layout.Cmdline, 1))
}

func TestCheckErrors(t *testing.T) {
	k, err := Parse(vmlinux(elf.ELFCLASS64, entry8(0x1000000)))
	require.NoError(t, err)
	// The kernel ends at 18 MiB.
	require.NoError(t, k.Check(18*mib, "", 0))
	require.ErrorIs(t, k.Check(18*mib-1, "", 0), ErrNotEnoughMemory)
	require.NoError(t, k.Check(18*mib+4096, "", 4096))
	require.ErrorIs(t, k.Check(18*mib+4096, "", 4097), ErrInitrdTooLarge)
	require.ErrorIs(t, k.Check(18*mib, "", 1<<40), ErrInitrdTooLarge)
	require.ErrorIs(t, k.Check(64*mib, string(make([]byte, layout.CmdlineMax)), 0), ErrCmdlineTooLong)

	mem := fakemem.New(64 * mib)
	_, err = k.Load(mem, 64*mib, "", nil, make([]e820.Entry, 200), 0)
	require.ErrorContains(t, err, "memory map")
	require.Zero(t, mem.Writes, "nothing written after a failed check")

	_, err = k.Load(fakemem.New(16*mib), 64*mib, "", nil, e820.Map(64*mib), 0)
	require.ErrorIs(t, err, fakemem.ErrOutOfRange)
}

func FuzzParse(f *testing.F) {
	f.Add(vmlinux(elf.ELFCLASS64, entry8(0x1000000)))
	f.Add(vmlinux(elf.ELFCLASS32, entry4(0x1000000)))
	f.Add(vmlinux(elf.ELFCLASS64, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := Parse(data)
		if err != nil {
			return
		}
		for _, s := range k.Segments {
			if s.Addr < layout.HighMemory || uint64(len(s.Data)) > s.MemSize {
				t.Fatalf("segment %#x: %d bytes of %d", s.Addr, len(s.Data), s.MemSize)
			}
		}
		// Bound the fake memory: hostile segment sizes must fail the check,
		// not allocate.
		const memSize = 64 * mib
		if _, err := k.Load(fakemem.New(memSize), memSize, "x", []byte{1}, e820.Map(memSize), 0); err == nil && k.end > memSize {
			t.Fatalf("loaded a kernel ending at %#x into %#x bytes", k.end, memSize)
		}
	})
}

// TestRealKernel loads a real vmlinux with a PVH note when one is at hand:
// $VMM_TEST_VMLINUX.
func TestRealKernel(t *testing.T) {
	path := os.Getenv("VMM_TEST_VMLINUX")
	if path == "" {
		testenv.Skip(t, "no vmlinux: set VMM_TEST_VMLINUX (scripts/test-kernels.sh extracts Debian's)")
	}
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	k, err := Parse(data)
	require.NoError(t, err, path)
	require.GreaterOrEqual(t, uint64(k.Entry), k.Segments[0].Addr)
	require.Less(t, uint64(k.Entry), k.end)
	const memSize = 256 * mib
	mem := fakemem.New(memSize)
	_, err = k.Load(mem, memSize, "console=ttyS0", make([]byte, mib), e820.Map(memSize), 0)
	require.NoError(t, err)
	s := k.Segments[0]
	require.Equal(t, s.Data[:64], mem.Read(s.Addr, 64))
	_, err = Parse(data[:len(data)/2])
	require.ErrorIs(t, err, ErrTruncated)

	// From the file: the same kernel, its segments left in the file.
	fk, err := ParseFrom(bytes.NewReader(data))
	require.NoError(t, err)
	require.Equal(t, k.Entry, fk.Entry)
	require.Nil(t, fk.Segments[0].Data)
	fmem := fakemem.New(memSize)
	_, err = fk.Load(fmem, memSize, "console=ttyS0", make([]byte, mib), e820.Map(memSize), 0)
	require.NoError(t, err)
	require.Equal(t, s.Data[:64], fmem.Read(s.Addr, 64))
}

package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/boot"
	"github.com/vmmdev/vmm/boot/internal/fakemem"
	"github.com/vmmdev/vmm/boot/internal/testkernel"
	"github.com/vmmdev/vmm/boot/linux"
	"github.com/vmmdev/vmm/boot/multiboot"
	"github.com/vmmdev/vmm/boot/pvh"
	"github.com/vmmdev/vmm/internal/elfbuild"
	"github.com/vmmdev/vmm/layout"
)

const mib = 1 << 20

// pvhAndMultiboot is an ELF with both a PVH note and a multiboot header: PVH wins.
func pvhAndMultiboot() []byte {
	entry := make([]byte, 4)
	binary.LittleEndian.PutUint32(entry, 0x100000)
	text := append(make([]byte, 16), testkernel.MultibootHeader(0)...)
	return elfbuild.Build(elf.ELFCLASS32, elf.EM_386, 0x100000, []elfbuild.Segment{
		{Type: elf.PT_LOAD, Paddr: 0x100000, Vaddr: 0x100000, Data: text},
		{Type: elf.PT_NOTE, Data: elfbuild.Note("Xen", 18, entry)},
	})
}

// plainELF is an ELF executable with neither a PVH note nor a multiboot header.
func plainELF() []byte {
	return elfbuild.Build(elf.ELFCLASS64, elf.EM_X86_64, 0x400000, []elfbuild.Segment{
		{Type: elf.PT_LOAD, Paddr: 0x400000, Vaddr: 0x400000, Data: []byte("hello")},
	})
}

func TestDetect(t *testing.T) {
	brokenBz := testkernel.BzImage(4, 4096)
	brokenBz[0x206] = 0 // protocol 2.00
	for name, tc := range map[string]struct {
		data []byte
		want Format
	}{
		"bzImage":               {testkernel.BzImage(4, 4096), BzImage},
		"bzImage, unsupported":  {brokenBz, BzImage},
		"bzImage, truncated":    {testkernel.BzImage(4, 4096)[:3000], BzImage},
		"PVH":                   {testkernel.PVH(), PVH},
		"PVH truncated":         {testkernel.PVH()[:200], PVH},
		"multiboot ELF":         {testkernel.Multiboot(), Multiboot},
		"PVH and multiboot":     {pvhAndMultiboot(), PVH},
		"multiboot flat binary": {append(make([]byte, 64), testkernel.MultibootHeader(0x10000, 0x100040, 0x100000, 0, 0, 0x100000)...), Multiboot},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Detect(tc.data)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	for name, data := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("#!/bin/sh\necho not a kernel\n"),
		"plain ELF": plainELF(),
		"PE":        append([]byte("MZ"), make([]byte, 4096)...),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Detect(data)
			require.ErrorIs(t, err, ErrNotKernel)
			require.Equal(t, Unknown, got)
		})
	}
}

func TestFormatString(t *testing.T) {
	require.Equal(t, "bzImage", BzImage.String())
	require.Equal(t, "PVH ELF", PVH.String())
	require.Equal(t, "multiboot", Multiboot.String())
	require.Equal(t, "unknown", Format(42).String())
}

func TestLoadEachFormat(t *testing.T) {
	const memSize = 128 * mib
	for name, tc := range map[string]struct {
		kernel  []byte
		want    boot.Entry
		cmdline string
	}{
		"bzImage": {testkernel.BzImage(4, 4096), boot.Entry{Mode: boot.Long64, IP: 0x100200, RSI: layout.ZeroPage}, "console=ttyS0"},
		"PVH":     {testkernel.PVH(), boot.Entry{Mode: boot.Protected32, IP: testkernel.PVHEntry, RBX: layout.BootInfo}, "console=ttyS0"},
		// As GRUB and QEMU: the kernel's path first.
		"multiboot": {testkernel.Multiboot(), boot.Entry{Mode: boot.Protected32, IP: testkernel.MultibootEntry, RAX: 0x2badb002, RBX: layout.BootInfo}, "kernel console=ttyS0"},
	} {
		t.Run(name, func(t *testing.T) {
			initrd := []byte("initrd!")
			require.NoError(t, Check(bytes.NewReader(tc.kernel), "kernel", int64(len(initrd)), "console=ttyS0", memSize))
			mem := fakemem.New(memSize)
			entry, err := Load(bytes.NewReader(tc.kernel), "kernel", bytes.NewReader(initrd), "console=ttyS0", mem, memSize, 0xe0000)
			require.NoError(t, err)
			require.Equal(t, tc.want, entry)
			require.Equal(t, tc.cmdline+"\x00", string(mem.Read(layout.Cmdline, uint64(len(tc.cmdline)+1))))
		})
	}
}

func TestLoadInitrdIsMultibootModule(t *testing.T) {
	mem := fakemem.New(16 * mib)
	_, err := Load(bytes.NewReader(testkernel.Multiboot()), "kernel", bytes.NewReader([]byte("mod")), "", mem, 16*mib, 0)
	require.NoError(t, err)
	info := mem.Read(layout.BootInfo, 32)
	require.Equal(t, uint32(1), binary.LittleEndian.Uint32(info[20:]), "mods_count")
	mod := mem.Read(uint64(binary.LittleEndian.Uint32(info[24:])), 8)
	require.Equal(t, []byte("mod"), mem.Read(uint64(binary.LittleEndian.Uint32(mod)), 3))

	mem = fakemem.New(16 * mib)
	_, err = Load(bytes.NewReader(testkernel.Multiboot()), "kernel", nil, "", mem, 16*mib, 0)
	require.NoError(t, err)
	require.Zero(t, binary.LittleEndian.Uint32(mem.Read(layout.BootInfo+20, 4)), "no initrd, no module")
}

func TestCheckErrors(t *testing.T) {
	bz := testkernel.BzImage(4, 4096)
	for name, tc := range map[string]struct {
		err  error
		want error
	}{
		"not a kernel":      {Check(bytes.NewReader([]byte("hello")), "kernel", 0, "", 64*mib), ErrNotKernel},
		"bz truncated":      {Check(bytes.NewReader(bz[:len(bz)-64]), "kernel", 0, "", 64*mib), linux.ErrTruncated},
		"bz cmdline":        {Check(bytes.NewReader(bz), "kernel", 0, string(make([]byte, 2048)), 64*mib), linux.ErrCmdlineTooLong},
		"bz initrd":         {Check(bytes.NewReader(bz), "kernel", 64*mib, "", 64*mib), linux.ErrInitrdTooLarge},
		"bz memory":         {Check(bytes.NewReader(bz), "kernel", 0, "", 16*mib), linux.ErrNotEnoughMemory},
		"PVH truncated":     {Check(bytes.NewReader(testkernel.PVH()[:300]), "kernel", 0, "", 64*mib), pvh.ErrTruncated},
		"PVH initrd":        {Check(bytes.NewReader(testkernel.PVH()), "kernel", 63*mib, "", 64*mib), pvh.ErrInitrdTooLarge},
		"PVH memory":        {Check(bytes.NewReader(testkernel.PVH()), "kernel", 0, "", 17*mib), pvh.ErrNotEnoughMemory},
		"multiboot initrd":  {Check(bytes.NewReader(testkernel.Multiboot()), "kernel", 64*mib, "", 64*mib), multiboot.ErrModulesTooLarge},
		"multiboot cmdline": {Check(bytes.NewReader(testkernel.Multiboot()), "kernel", 0, string(make([]byte, layout.CmdlineMax)), 64*mib), multiboot.ErrCmdlineTooLong},
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, tc.err, tc.want)
		})
	}
	require.ErrorContains(t, Check(bytes.NewReader(bz[:len(bz)-64]), "kernel", 0, "", 64*mib), "bzImage kernel: ")
	require.Error(t, Check(bytes.NewReader(bz), "kernel", -1, "", 64*mib))

	// Load refuses the same inputs before writing anything.
	mem := fakemem.New(64 * mib)
	_, err := Load(bytes.NewReader(bz), "kernel", bytes.NewReader(make([]byte, 64*mib)), "", mem, 64*mib, 0)
	require.ErrorIs(t, err, linux.ErrInitrdTooLarge)
	require.Zero(t, mem.Writes)
	_, err = Load(bytes.NewReader([]byte("nope")), "kernel", nil, "", mem, 64*mib, 0)
	require.ErrorIs(t, err, ErrNotKernel)
}

func FuzzDetect(f *testing.F) {
	f.Add(testkernel.BzImage(1, 64))
	f.Add(testkernel.PVH())
	f.Add(testkernel.Multiboot())
	f.Add(plainELF())
	f.Fuzz(func(t *testing.T, data []byte) {
		format, err := Detect(data)
		if (err == nil) == (format == Unknown) {
			t.Fatalf("format %v with error %v", format, err)
		}
		if err := Check(bytes.NewReader(data), "kernel", 1, "console=ttyS0", 64*mib); err != nil {
			return
		}
		if _, err := Load(bytes.NewReader(data), "kernel", bytes.NewReader([]byte{1}), "console=ttyS0", fakemem.New(64*mib), 64*mib, 0); err != nil {
			t.Fatalf("Check passed but Load failed: %v", err)
		}
	})
}

// countingSource counts the bytes read from it.
type countingSource struct {
	*bytes.Reader
	read int
}

func (c *countingSource) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.Reader.ReadAt(p, off)
	c.read += n
	return n, err
}

// A PVH kernel is parsed from its headers and notes and its segments copied
// straight into guest memory, never read whole onto the heap (Debian's
// vmlinux is 66 MB, per vmm process).
func TestPVHNotReadWhole(t *testing.T) {
	entry := make([]byte, 8)
	binary.LittleEndian.PutUint64(entry, 16*mib)
	text := bytes.Repeat([]byte{0x90}, 4*mib)
	img := elfbuild.Build(elf.ELFCLASS64, elf.EM_X86_64, 0xffffffff81000000, []elfbuild.Segment{
		{Type: elf.PT_LOAD, Vaddr: 0xffffffff81000000, Paddr: 16 * mib, Data: text},
		{Type: elf.PT_NOTE, Data: elfbuild.Note("Xen", 18, entry), Align: 4},
	})
	src := &countingSource{Reader: bytes.NewReader(img)}
	require.NoError(t, Check(src, "vmlinux", 0, "console=ttyS0", 64*mib))
	require.Less(t, src.read, 64<<10, "Check read the segments")
	src.read = 0
	mem := fakemem.New(64 * mib)
	e, err := Load(src, "vmlinux", nil, "console=ttyS0", mem, 64*mib, 0)
	require.NoError(t, err)
	require.Equal(t, uint64(16*mib), e.IP)
	require.Equal(t, text, mem.Read(16*mib, uint64(len(text))))
	require.Less(t, src.read, len(text)+64<<10, "the segment was read more than once")
}

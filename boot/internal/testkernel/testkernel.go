// Package testkernel builds minimal kernel images of every supported format
// for loader tests: they parse and load, but hold no runnable code.
package testkernel

import (
	"debug/elf"
	"encoding/binary"

	"github.com/vmmdev/vmm/internal/elfbuild"
)

const mib = 1 << 20

// BzImage returns a bzImage with setupSects setup sectors and pmSize bytes of
// protected-mode code: boot protocol 2.15, relocatable, 64-bit entry,
// pref_address 16 MiB, init_size 8 MiB, cmdline_size 2047.
func BzImage(setupSects, pmSize int) []byte {
	le := binary.LittleEndian
	data := make([]byte, (setupSects+1)*512+pmSize)
	data[0x1f1] = byte(setupSects)
	le.PutUint32(data[0x1f4:], uint32((pmSize+15)/16)) // syssize
	le.PutUint16(data[0x1fe:], 0xaa55)
	data[0x200], data[0x201] = 0xeb, 0x6a // jump past the header, which ends at 0x26c
	copy(data[0x202:], "HdrS")
	le.PutUint16(data[0x206:], 0x020f)
	data[0x211] = 0x01                     // LOADED_HIGH
	le.PutUint32(data[0x22c:], 0x7fffffff) // initrd_addr_max
	le.PutUint32(data[0x230:], 0x200000)   // kernel_alignment
	data[0x234] = 1                        // relocatable
	le.PutUint16(data[0x236:], 0x3)        // XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
	le.PutUint32(data[0x238:], 2047)       // cmdline_size
	le.PutUint32(data[0x248:], 0x10)       // payload_offset
	le.PutUint32(data[0x24c:], uint32(pmSize/2))
	le.PutUint64(data[0x258:], 0x1000000) // pref_address
	le.PutUint32(data[0x260:], 0x800000)  // init_size
	for i := (setupSects + 1) * 512; i < len(data); i++ {
		data[i] = byte(i*7 + 1)
	}
	return data
}

// PVHEntry is the entry point of PVH().
const PVHEntry = 16*mib + 0x40

// PVH returns an ELF64 shaped like Linux's vmlinux: text at 16 MiB, a 1 MiB
// bss segment at 17 MiB, and notes including the PVH entry note.
func PVH() []byte {
	entry := make([]byte, 8)
	binary.LittleEndian.PutUint64(entry, PVHEntry)
	notes := append(elfbuild.Note("GNU", 3, []byte("build-id")), elfbuild.Note("Xen", 18, entry)...)
	return elfbuild.Build(elf.ELFCLASS64, elf.EM_X86_64, 0xffffffff81000000, []elfbuild.Segment{
		{Type: elf.PT_LOAD, Vaddr: 0xffffffff81000000, Paddr: 16 * mib, Data: make([]byte, 0x100)},
		{Type: elf.PT_LOAD, Vaddr: 0xffffffff82000000, Paddr: 17 * mib, Data: []byte("data"), Memsz: mib},
		{Type: elf.PT_NOTE, Data: notes, Align: 4},
	})
}

// MultibootHeader returns a multiboot v1 header with flags and, if given, the
// address fields.
func MultibootHeader(flags uint32, addr ...uint32) []byte {
	le := binary.LittleEndian
	b := make([]byte, 12+4*len(addr))
	le.PutUint32(b, 0x1badb002)
	le.PutUint32(b[4:], flags)
	le.PutUint32(b[8:], -(0x1badb002 + flags))
	for i, a := range addr {
		le.PutUint32(b[12+4*i:], a)
	}
	return b
}

// MultibootEntry is the entry point of Multiboot().
const MultibootEntry = mib + 0x40

// Multiboot returns an ELF32 multiboot kernel linked at 0xc0100000 and loaded
// at 1 MiB, with a 12 KiB bss and no PVH note.
func Multiboot() []byte {
	text := make([]byte, 0x200)
	copy(text[16:], MultibootHeader(0x3))
	return elfbuild.Build(elf.ELFCLASS32, elf.EM_386, 0xc0100040, []elfbuild.Segment{
		{Type: elf.PT_LOAD, Vaddr: 0xc0100000, Paddr: mib, Data: text, Memsz: 0x3000},
	})
}

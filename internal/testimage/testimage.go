// Package testimage builds minimal kernel images around a few bytes of guest
// machine code, for tests that boot tiny guests through the real loaders.
package testimage

import (
	"debug/elf"
	"encoding/binary"

	"github.com/vmmdev/vmm/internal/elfbuild"
)

// BzImage64 builds a minimal bzImage (boot protocol 2.15, 64-bit entry) whose
// protected-mode code is code, entered at its offset 0x200 (startup_64).
func BzImage64(code []byte) []byte {
	const setupSects = 1
	img := make([]byte, (setupSects+1)*512+0x200+len(code))
	le := binary.LittleEndian
	img[0x1f1] = setupSects
	le.PutUint16(img[0x1fe:], 0xaa55)
	img[0x200], img[0x201] = 0xeb, 0x66 // jmp over the header, which ends at 0x268
	copy(img[0x202:], "HdrS")
	le.PutUint16(img[0x206:], 0x020f)
	img[0x211] = 0x01                     // loadflags: LOADED_HIGH
	le.PutUint32(img[0x22c:], 0x7fffffff) // initrd_addr_max
	le.PutUint32(img[0x230:], 0x200000)   // kernel_alignment
	img[0x234] = 1                        // relocatable_kernel
	le.PutUint16(img[0x236:], 0x3)        // xloadflags: KERNEL_64, CAN_BE_LOADED_ABOVE_4G
	le.PutUint32(img[0x238:], 2048)       // cmdline_size
	le.PutUint32(img[0x260:], 0x100000)   // init_size
	copy(img[(setupSects+1)*512+0x200:], code)
	return img
}

// MultibootLoad is where Multiboot places its kernel.
const MultibootLoad = 0x100000

// Multiboot builds a multiboot v1 kernel that uses the header's address
// fields (flag 16): header then code, loaded at MultibootLoad, entered at the code.
func Multiboot(code []byte) []byte {
	const hdrLen = 32
	flags := uint32(1<<1 | 1<<16) // memory info, address fields valid
	img := make([]byte, hdrLen, hdrLen+len(code))
	le := binary.LittleEndian
	end := uint32(MultibootLoad + hdrLen + len(code))
	le.PutUint32(img[0:], 0x1badb002)
	le.PutUint32(img[4:], flags)
	le.PutUint32(img[8:], -(0x1badb002 + flags))
	le.PutUint32(img[12:], MultibootLoad)        // header_addr
	le.PutUint32(img[16:], MultibootLoad)        // load_addr
	le.PutUint32(img[20:], end)                  // load_end_addr
	le.PutUint32(img[24:], end)                  // bss_end_addr
	le.PutUint32(img[28:], MultibootLoad+hdrLen) // entry_addr
	return append(img, code...)
}

// MultibootELF builds a multiboot v1 ELF32 kernel with one segment at addr
// (physical and virtual): the multiboot header (no address fields: the
// loader reads the ELF), then code at addr+16, the entry.
func MultibootELF(addr uint32, code []byte) []byte {
	flags := uint32(1 << 1) // memory info
	seg := make([]byte, 16, 16+len(code))
	le := binary.LittleEndian
	le.PutUint32(seg[0:], 0x1badb002)
	le.PutUint32(seg[4:], flags)
	le.PutUint32(seg[8:], -(0x1badb002 + flags))
	seg = append(seg, code...)
	return elfbuild.Build(elf.ELFCLASS32, elf.EM_386, uint64(addr)+16, []elfbuild.Segment{
		{Type: elf.PT_LOAD, Vaddr: uint64(addr), Paddr: uint64(addr), Data: seg},
	})
}

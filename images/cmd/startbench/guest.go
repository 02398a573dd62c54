package main

import (
	"github.com/vmmdev/vmm/internal/testimage"
)

// The tiny guest: its first instruction starts writing '!' to COM1, then it
// writes 0x10 to the debug-exit port (QEMU and vmm exit with 33) and halts.
// Each VMM enters it in the mode it boots kernels in, so the same program is
// encoded for that mode.
const firstByte = '!'

// program32 is the program in 32- or 64-bit code (the operand-size prefix
// makes "mov dx, imm16" the same bytes in both).
var program32 = []byte{
	0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
	0xb0, firstByte, 0xee, // mov al, '!'; out dx, al
	0xb0, 0x10, 0xe6, 0xf4, // mov al, 0x10; out 0xf4, al
	0xf4, 0xeb, 0xfd, // hlt; jmp hlt
}

// program16 is the same program in real-mode code.
var program16 = []byte{
	0xba, 0xf8, 0x03, // mov dx, 0x3f8
	0xb0, firstByte, 0xee, // mov al, '!'; out dx, al
	0xb0, 0x10, 0xe6, 0xf4, // mov al, 0x10; out 0xf4, al
	0xf4, 0xeb, 0xfd, // hlt; jmp hlt
}

// bzImage is a bzImage with the program at both entry points of its
// protected-mode code: offset 0 (the 32-bit entry gokvm jumps to) and 0x200
// (the 64-bit entry vmm uses).
func bzImage() []byte {
	img := testimage.BzImage64(program32)
	const setupSects = 1
	copy(img[(setupSects+1)*512:], program32)
	return img
}

// resetVectorOffset is where the reset vector (0xfffffff0) falls in a 64 KiB
// firmware image mapped just below 4 GiB.
const resetVectorOffset = 0xfff0

// firmware is a 64 KiB flat firmware image whose reset vector is the program
// (QEMU -bios: QEMU's own firmware needs FPU instructions that the PVM hosts
// we develop on cannot run, and it would time QEMU's BIOS, not QEMU).
func firmware() []byte {
	fw := make([]byte, 64<<10)
	copy(fw[resetVectorOffset:], program16)
	return fw
}

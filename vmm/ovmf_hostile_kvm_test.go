package vmm

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/internal/testenv"
)

// A hostile guest of the flash chips, run as the code image of
// --firmware ovmf,code=PATH,vars=PATH: vmm maps it exactly as it maps
// OVMF (code chip ending at 4 GiB, store directly below, the code's last
// 64 KiB aliased below 1 MiB under the PAM registers), so the guest meets
// the same chips, slots and chipset OVMF does. It starts as SeaBIOS does
// (the reset vector jumps into the alias at F000:0000), enters flat 32-bit
// protected mode, copies its payload to RAM at hostilePayload and runs it
// there: commands to the code chip unmap the chip it started from, and PAM
// toggles take the alias away. The payload sends the chips what a broken or
// malicious guest would, checks after each step that they answer as real
// flash does (status bits, read-array data) and ends with one legitimate
// program that must land; a failed check writes its step number to the
// debug-exit port, success writes hostileDone, and each step's number on
// COM1 shows how far it got. Its descriptors have the accessed bit set, as
// OVMF's: the CPU would write that bit into the GDT, which is in ROM, and
// KVM's emulator fails the far jump into protected mode when it cannot.
const (
	hostileCodeSize = 64 << 10
	hostileEntry    = 0xf0000 // F000:0000, the image's first byte in the alias
	hostileGDT      = 0x40    // image offsets of the 16-bit stage's data
	hostileGDTR     = 0x60
	hostilePM       = 0x80
	hostileImageOff = 0x200 // the payload's offset in the image
	hostilePayload  = 0x10000
	hostileStack    = 0xf000
	hostileSave     = 0x8000 // RAM where the payload keeps what it read first
	hostileDone     = 0x2a
	// hostileLegit is the byte the payload programs, at hostileLegitOff
	// from the store's end.
	hostileLegit    = 0x5a
	hostileLegitOff = 0x1000 - 0x123
)

// flashAsm emits flat 32-bit code (absolute addresses only, so it runs
// wherever it is copied).
type flashAsm struct{ b []byte }

func (a *flashAsm) emit(b ...byte)              { a.b = append(a.b, b...) }
func (a *flashAsm) imm32(v uint32)              { a.b = binary.LittleEndian.AppendUint32(a.b, v) }
func (a *flashAsm) movMem8(addr uint32, v byte) { a.emit(0xc6, 0x05); a.imm32(addr); a.emit(v) }
func (a *flashAsm) movMem16(addr uint32, v uint16) {
	a.emit(0x66, 0xc7, 0x05)
	a.imm32(addr)
	a.b = binary.LittleEndian.AppendUint16(a.b, v)
}
func (a *flashAsm) movMem32(addr, v uint32) { a.emit(0xc7, 0x05); a.imm32(addr); a.imm32(v) }
func (a *flashAsm) loadAL(addr uint32)      { a.emit(0xa0); a.imm32(addr) } // mov al, [addr]
// mark writes c to COM1: the console shows how far the guest got.
func (a *flashAsm) mark(c byte)         { a.emit(0x66, 0xba, 0xf8, 0x03, 0xb0, c, 0xee) }
func (a *flashAsm) storeAL(addr uint32) { a.emit(0xa2); a.imm32(addr) } // mov [addr], al

// fail ends the guest with step on the debug-exit port unless the last
// compare was equal: je over "mov al, step; out 0xf4, al; hlt".
func (a *flashAsm) fail(step byte) { a.emit(0x74, 0x05, 0xb0, step, 0xe6, 0xf4, 0xf4) }

// expect checks that the byte at addr reads v.
func (a *flashAsm) expect(addr uint32, v, step byte) {
	a.loadAL(addr)
	a.emit(0x3c, v) // cmp al, v
	a.fail(step)
}

// expectSaved checks that the byte at addr reads what save holds.
func (a *flashAsm) expectSaved(addr, save uint32, step byte) {
	a.loadAL(addr)
	a.emit(0x3a, 0x05) // cmp al, [save]
	a.imm32(save)
	a.fail(step)
}

// repStosd writes n dwords of v from dst upward.
func (a *flashAsm) repStosd(dst, v, n uint32) {
	a.emit(0xbf)
	a.imm32(dst) // mov edi, dst
	a.emit(0xb8)
	a.imm32(v) // mov eax, v
	a.emit(0xb9)
	a.imm32(n)               // mov ecx, n
	a.emit(0xfc, 0xf3, 0xab) // cld; rep stosd
}

// pciWrite8 writes v to register reg of the host bridge (00:00.0)
// through the 0xcf8/0xcfc configuration mechanism.
func (a *flashAsm) pciWrite8(reg, v byte) {
	a.emit(0xb8)
	a.imm32(0x80000000 | uint32(reg&^3)) // mov eax, address
	a.emit(0x66, 0xba, 0xf8, 0x0c, 0xef) // mov dx, 0xcf8; out dx, eax
	a.emit(0x66, 0xba, 0xfc+reg&3, 0x0c) // mov dx, 0xcfc + reg%4
	a.emit(0xb0, v, 0xee)                // mov al, v; out dx, al
}

// hostileFlashImage is the 64 KiB code image for a store of varsSize
// bytes, and the store offset of the legitimate program.
func hostileFlashImage(varsSize int) []byte {
	img := bytes.Repeat([]byte{0xf4}, hostileCodeSize) // hlt everywhere else
	codeBase := uint32(1<<32 - hostileCodeSize)
	vb := codeBase - uint32(varsSize) // the store
	// Reset vector (0xfffffff0): jmp far F000:0000.
	copy(img[hostileCodeSize-16:], []byte{0xea, 0x00, 0x00, 0x00, 0xf0})
	// 16-bit stage at F000:0000.
	entry := []byte{
		0xfa,                              // cli
		0xba, 0xf8, 0x03, 0xb0, 'R', 0xee, // mov dx, COM1; mov al, 'R'; out dx, al
		0x66, 0x2e, 0x0f, 0x01, 0x16, hostileGDTR, 0x00, // o32 lgdt cs:[gdtr]
		0x0f, 0x20, 0xc0, // mov eax, cr0
		0x0c, 0x01, // or al, 1 (PE)
		0x0f, 0x22, 0xc0, // mov cr0, eax
		0x66, 0xea, // jmp dword 0x08:pm
	}
	entry = binary.LittleEndian.AppendUint32(entry, hostileEntry+hostilePM)
	entry = append(entry, 0x08, 0x00)
	copy(img, entry)
	gdt := []uint64{0, 0x00cf9b000000ffff, 0x00cf93000000ffff} // null, flat code, flat data (accessed: the GDT is in ROM)
	for i, d := range gdt {
		binary.LittleEndian.PutUint64(img[hostileGDT+8*i:], d)
	}
	binary.LittleEndian.PutUint16(img[hostileGDTR:], uint16(8*len(gdt)-1))
	binary.LittleEndian.PutUint32(img[hostileGDTR+2:], hostileEntry+hostileGDT)

	p := &flashAsm{}
	payload(p, vb, codeBase, varsSize)
	pm := &flashAsm{}
	pm.emit(0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0) // mov ax, 0x10; mov ds/es/ss, ax
	pm.emit(0xbc)
	pm.imm32(hostileStack) // mov esp
	pm.mark('P')
	pm.emit(0xbe)
	pm.imm32(hostileEntry + hostileImageOff) // mov esi, payload in the alias
	pm.emit(0xbf)
	pm.imm32(hostilePayload) // mov edi
	pm.emit(0xb9)
	pm.imm32(uint32(len(p.b)+3) / 4) // mov ecx, dwords
	pm.emit(0xfc, 0xf3, 0xa5)        // cld; rep movsd
	pm.emit(0xb8)
	pm.imm32(hostilePayload)
	pm.emit(0xff, 0xe0) // jmp eax
	copy(img[hostilePM:], pm.b)
	if hostileImageOff+len(p.b) > 0x3000 { // step 2 reads the image at 0x3001

		panic("hostile payload too large")
	}
	copy(img[hostileImageOff:], p.b)
	return img
}

// payload is the hostile sequence. vb and cb are the store's and the
// code's base. Step numbers name the failed check.
func payload(a *flashAsm, vb, cb uint32, varsSize int) {
	// The payload's own GDT, in RAM: the alias holding the first one goes
	// away with the PAM toggles.
	gdtAt := uint32(hostileSave + 0x100)
	a.movMem32(gdtAt, 0)
	a.movMem32(gdtAt+4, 0)
	a.movMem32(gdtAt+8, 0x0000ffff)
	a.movMem32(gdtAt+12, 0x00cf9b00)
	a.movMem32(gdtAt+16, 0x0000ffff)
	a.movMem32(gdtAt+20, 0x00cf9300)
	a.movMem16(gdtAt+24, 23)
	a.movMem32(gdtAt+26, gdtAt)
	a.emit(0x0f, 0x01, 0x15) // lgdt [gdtAt+24]
	a.imm32(gdtAt + 24)

	// What the store holds where the steps aim, read in read-array mode.
	probes := []uint32{0x100, 0x2000, 0x5000, 0x6000, 0x7000, 0x7ffe, 0x8001}
	save := func(i int) uint32 { return hostileSave + uint32(i) }
	for i, off := range probes {
		a.loadAL(vb + off)
		a.storeAL(save(i))
	}
	unchanged := func(step byte) {
		for i, off := range probes {
			a.expectSaved(vb+off, save(i), step)
		}
	}

	a.mark('1')
	// 1: out of order: a confirm, a lock's second byte and a data byte
	// with nothing pending are unknown commands (read array); status
	// untouched (ready).
	for _, v := range []byte{0xd0, 0x01, 0x2f, 0x5a} {
		a.movMem8(vb+0x100, v)
	}
	unchanged(1)
	a.movMem8(vb, 0x70)
	a.expect(vb+0x1234, 0x80, 1)
	a.movMem8(vb, 0xff)

	a.mark('2')
	// 2: program and erase the read-only code chip: the error bits, the
	// code unchanged. Its slot is unmapped meanwhile: the payload runs
	// from RAM for this.
	a.movMem8(cb+0x1000, 0x40)
	a.movMem8(cb+0x1000, 0x00)
	a.expect(cb+0x1000, 0x90, 2)
	a.movMem8(cb+0x2000, 0x20)
	a.movMem8(cb+0x2000, 0xd0)
	a.expect(cb, 0xb0, 2)
	// A wide program at a misaligned address, and a buffered write.
	a.movMem32(cb+0x3001, 0xffffff10)
	a.movMem32(cb+0x3001, 0xdeadbeef)
	a.movMem8(cb+0x4000, 0xe8)
	a.movMem8(cb+0x4000, 0x00)
	a.movMem8(cb+0x4000, 0x00)
	a.movMem8(cb+0x4000, 0xd0)
	a.expect(cb, 0xb0, 2)
	a.movMem8(cb, 0x50) // clear status: read array, the slot is back
	a.expect(cb+hostileCodeSize-16, 0xea, 2)
	a.expect(cb+0x3001, 0xf4, 2)
	a.movMem8(cb, 0x70)
	a.expect(cb, 0x00, 2)
	a.movMem8(cb, 0xff)

	a.mark('3')
	// 3: a block erase with a bad confirm: a sequence error (both
	// error bits), read array, the block as it was.
	a.movMem8(vb+0x2000, 0x20)
	a.movMem8(vb+0x2000, 0x55)
	unchanged(3)
	a.movMem8(vb, 0x70)
	a.expect(vb, 0xb0, 3)
	a.movMem8(vb, 0x50)

	a.mark('4')
	// 4: wide and misaligned writes whose first byte is a command that
	// writes nothing (read status, CFI query, an erase cancelled by read
	// array), and thousands of them at once: rep stosd of read-status
	// and of confirm bytes over a block.
	a.movMem32(vb+0x3001, 0x12345670)
	a.expect(vb+0x3003, 0x00, 4)  // status after clear
	a.movMem16(vb+0x4fff, 0x9898) // across a page: KVM splits it
	a.expect(vb+0x4010, 'Q', 4)
	a.movMem16(vb+0x4f01, 0x2020)
	a.movMem16(vb+0x4f01, 0xffff)
	a.movMem8(vb, 0x70)
	a.expect(vb, 0x00, 4) // the cancelled erase was no error
	a.repStosd(vb+0x5000, 0x70707070, 1024)
	a.repStosd(vb+0x5000, 0xd0d0d0d0, 1024)
	a.movMem8(vb, 0xff)
	unchanged(4)

	a.mark('5')
	// 5: unknown commands: read array.
	for _, v := range []byte{0x12, 0x99, 0xc0, 0x01, 0xee} {
		a.movMem8(vb+0x6000, v)
	}
	unchanged(5)

	a.mark('6')
	// 6: buffered writes: a count beyond the 64-byte buffer, data past
	// the count, a confirm that is not one, and data leaving the block:
	// each a sequence error, nothing written.
	a.movMem8(vb+0x7000, 0xe8)
	a.movMem8(vb+0x7000, 0xff) // 256 bytes
	a.movMem8(vb+0x7000, 0x11)
	a.movMem8(vb+0x7000, 0x22)
	unchanged(6)
	a.movMem8(vb, 0x70)
	a.expect(vb, 0xb0, 6)
	a.movMem8(vb, 0x50)
	a.movMem8(vb+0x7000, 0xe8)
	a.movMem8(vb+0x7000, 0x01) // 2 bytes
	a.movMem32(vb+0x7000, 0x11223344)
	a.movMem8(vb+0x7000, 0xd0)
	a.movMem8(vb+0x7000, 0x50)
	a.movMem8(vb+0x7000, 0xe8)
	a.movMem8(vb+0x7000, 0x03)
	a.movMem32(vb+0x7000, 0x11223344)
	a.movMem8(vb+0x7000, 0x00) // not a confirm
	a.movMem8(vb+0x7000, 0x50)
	a.movMem8(vb+0x7ffe, 0xe8)
	a.movMem8(vb+0x7ffe, 0x03)
	a.movMem32(vb+0x7ffe, 0x11223344) // into the next block
	a.movMem8(vb+0x7ffe, 0xd0)
	a.movMem8(vb+0x7ffe, 0x50)
	unchanged(6)

	a.mark('7')
	// 7: PAM toggles with the store in CFI query mode: every segment of
	// 0xc0000-0xfffff between ROM, RAM and read-only RAM, then the BIOS
	// segment as RAM (a write sticks), read-only RAM (a write is
	// dropped) and ROM again (the image's first byte); the store still
	// answers its query.
	a.movMem8(vb, 0x98)
	for i := 0; i < 8; i++ {
		for r := byte(0); r < 7; r++ {
			a.pciWrite8(0x59+r, byte(i*0x37)+r*0x11)
		}
	}
	a.pciWrite8(0x59, 0x30)
	a.movMem32(hostileEntry, 0x12345678)
	a.expect(hostileEntry, 0x78, 7)
	a.pciWrite8(0x59, 0x10)
	a.movMem8(hostileEntry, 0x99)
	a.expect(hostileEntry, 0x78, 7)
	a.pciWrite8(0x59, 0x00)
	a.expect(hostileEntry, 0xfa, 7)
	a.expect(vb+0x11, 'R', 7)
	a.movMem8(vb, 0xff)
	unchanged(7)

	a.mark('8')
	// 8: one legitimate program: status while it completes, the byte in
	// read-array mode after.
	legit := vb + uint32(varsSize) - hostileLegitOff
	a.movMem8(vb, 0x50)
	a.movMem8(legit, 0x10)
	a.movMem8(legit, hostileLegit)
	a.expect(legit, 0x80, 8)
	a.movMem8(legit, 0xff)
	a.expect(legit, hostileLegit, 8)
	unchanged(8)

	a.emit(0xb0, hostileDone, 0xe6, 0xf4, 0xf4) // mov al, done; out 0xf4, al; hlt
}

// TestKVMOVMFHostileFlash runs the hostile flash guest: vmm neither
// crashes nor hangs, every check in the guest passes, the store file holds
// the template plus the one legitimate byte, and the code image and the
// template are unchanged.
func TestKVMOVMFHostileFlash(t *testing.T) {
	kvmtest.Require(t)
	tmpl, err := os.ReadFile(OVMFVarsPath)
	if err != nil {
		testenv.Skip(t, "Debian's ovmf package is not installed ("+OVMFVarsPath+"): scripts/setup.sh installs it")
	}
	legitAt := len(tmpl) - hostileLegitOff
	require.NotEqual(t, byte(hostileLegit), tmpl[legitAt], "the legitimate write must change the store")
	dir := t.TempDir()
	code := filepath.Join(dir, "hostile.fd")
	img := hostileFlashImage(len(tmpl))
	require.NoError(t, os.WriteFile(code, img, 0o600))
	vars := filepath.Join(dir, "vars.fd")
	start := time.Now()
	g := runGuest(t, Config{Firmware: "ovmf,code=" + code + ",vars=" + vars, Memory: 64 << 20, Timeout: 2 * time.Minute})
	t.Logf("%v after %v", g.res.Reason, time.Since(start))
	require.Equal(t, StopDebugExit, g.res.Reason.Kind, "%v\nconsole: %q", g.res.Reason, g.console)
	require.EqualValues(t, hostileDone, g.res.Reason.Value, "the guest's check of this step failed")
	got, err := os.ReadFile(vars)
	require.NoError(t, err)
	want := bytes.Clone(tmpl)
	want[legitAt] = hostileLegit
	require.Len(t, got, len(want), "the store keeps its size")
	if !bytes.Equal(want, got) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("store byte %#x is %#x, want %#x (only %#x may change)", i, got[i], want[i], legitAt)
			}
		}
	}
	after, err := os.ReadFile(code)
	require.NoError(t, err)
	require.Equal(t, img, after, "the code image is unchanged")
	after, err = os.ReadFile(OVMFVarsPath)
	require.NoError(t, err)
	require.Equal(t, tmpl, after, "the template is unchanged")
}

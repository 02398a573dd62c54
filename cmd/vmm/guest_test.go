package main

import (
	"encoding/binary"
	"fmt"
)

// asm assembles the tiny 64-bit test guests: bytes plus short jumps to
// labels, and RIP-relative addresses of labels.
type asm struct {
	b        []byte
	labels   map[string]int
	fixups   map[int]string // offset of a rel8 byte -> its label
	fixups32 map[int]string // offset of a rel32 field -> its label
}

func newAsm() *asm {
	return &asm{labels: map[string]int{}, fixups: map[int]string{}, fixups32: map[int]string{}}
}

// leaRAX loads the address of label into rax (lea rax, [rip+rel32]).
func (a *asm) leaRAX(label string) *asm {
	a.emit(0x48, 0x8d, 0x05)
	a.fixups32[len(a.b)] = label
	return a.emit(0, 0, 0, 0)
}

func (a *asm) emit(b ...byte) *asm { a.b = append(a.b, b...); return a }

func (a *asm) label(name string) *asm { a.labels[name] = len(a.b); return a }

// j emits a short jump (opcode op: 0xeb jmp, 0x74 je, 0x75 jne, 0x72 jb, 0x76 jbe, 0xe2 loop).
func (a *asm) j(op byte, label string) *asm {
	a.b = append(a.b, op, 0)
	a.fixups[len(a.b)-1] = label
	return a
}

// outAL writes al to port p (mov dx, p; out dx, al).
func (a *asm) outAL(port uint16) *asm {
	return a.emit(0x66, 0xba, byte(port), byte(port>>8), 0xee)
}

// print writes s to COM1.
func (a *asm) print(s string) *asm {
	a.emit(0x66, 0xba, 0xf8, 0x03) // mov dx, 0x3f8
	for _, c := range []byte(s) {
		a.emit(0xb0, c, 0xee) // mov al, c; out dx, al
	}
	return a
}

// debugExit writes v to port 0xf4: vmm exits with 2v+1.
func (a *asm) debugExit(v byte) *asm { return a.emit(0xb0, v, 0xe6, 0xf4, 0xf4) }

func (a *asm) bytes() []byte {
	out := append([]byte(nil), a.b...)
	for off, l := range a.fixups {
		target, ok := a.labels[l]
		rel := target - (off + 1)
		if !ok || rel < -128 || rel > 127 {
			panic(fmt.Sprintf("asm: label %q out of reach from %d", l, off))
		}
		out[off] = byte(int8(rel))
	}
	for off, l := range a.fixups32 {
		target, ok := a.labels[l]
		if !ok {
			panic(fmt.Sprintf("asm: no label %q", l))
		}
		binary.LittleEndian.PutUint32(out[off:], uint32(int32(target-(off+4))))
	}
	return out
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// Guests for the CLI tests, entered in 64-bit mode by the bzImage loader
// with rsi pointing at the zero page. No FPU, no faults (see docs/design.md).
var (
	guestPowerOff = func() []byte { return newAsm().print("bye\n").emit(0xb0, 0x34).outAL(0x3c0).emit(0xeb, 0xfe).bytes() }
	guestPVPanic  = func() []byte { return newAsm().emit(0xb0, 0x01).outAL(0x505).emit(0xeb, 0xfe).bytes() }
	guestI8042    = func() []byte { return newAsm().emit(0xb0, 0xfe, 0xe6, 0x64, 0xeb, 0xfe).bytes() }
	guestSpin     = func() []byte { return []byte{0xeb, 0xfe} }
	guestCliHlt   = func() []byte { return []byte{0xfa, 0xf4, 0xeb, 0xfd} }
)

// guestPrintThenSpin prints s and spins without exits.
func guestPrintThenSpin(s string) []byte { return newAsm().print(s).emit(0xeb, 0xfe).bytes() }

// guestEchoCmdline prints its kernel command line and a newline, then exits
// through the debug-exit port with the command line's last byte.
func guestEchoCmdline() []byte {
	return newAsm().
		emit(0x66, 0xba, 0xf8, 0x03).             // mov dx, 0x3f8
		emit(0x8b, 0x9e, 0x28, 0x02, 0x00, 0x00). // mov ebx, [rsi+0x228] (cmd_line_ptr)
		label("loop").
		emit(0x8a, 0x03). // mov al, [rbx]
		emit(0x84, 0xc0). // test al, al
		j(0x74, "done").
		emit(0xee).             // out dx, al
		emit(0x48, 0xff, 0xc3). // inc rbx
		j(0xeb, "loop").
		label("done").
		emit(0xb0, '\n', 0xee). // mov al, '\n'; out dx, al
		emit(0x8a, 0x43, 0xff). // mov al, [rbx-1]
		emit(0xe6, 0xf4, 0xf4). // out 0xf4, al; hlt
		bytes()
}

// guestGarbagePorts reads every port and writes it garbage, except the
// ports whose writes end the VM (i8042 command, debug-exit, ACPI sleep and
// reset, pvpanic, PCI reset control), then exits with 0x2a (exit 85).
func guestGarbagePorts() []byte {
	a := newAsm().
		emit(0x31, 0xd2). // xor edx, edx
		emit(0xb3, 0x5a). // mov bl, 0x5a
		label("loop")
	for _, p := range []uint16{0x64, 0xf4, 0x505, 0xcf9} {
		a.emit(0x66, 0x81, 0xfa, byte(p), byte(p>>8)).j(0x74, "skip") // cmp dx, p; je skip
	}
	a.emit(0x66, 0x81, 0xfa, 0xc0, 0x03).j(0x72, "do")   // cmp dx, 0x3c0; jb do
	a.emit(0x66, 0x81, 0xfa, 0xc2, 0x03).j(0x76, "skip") // cmp dx, 0x3c2; jbe skip
	a.label("do").
		emit(0xec).             // in al, dx
		emit(0x30, 0xd8).       // xor al, bl
		emit(0xee).             // out dx, al
		emit(0xd0, 0xc3).       // rol bl, 1
		emit(0x80, 0xc3, 0x3b). // add bl, 0x3b
		label("skip").
		emit(0x66, 0xff, 0xc2). // inc dx
		j(0x75, "loop")
	return a.debugExit(0x2a).bytes()
}

// guestMMIOHammer reads and writes 4096 unbacked pages at 256 MiB (above
// the tests' 64 MiB of RAM), then exits with 0x15 (exit 43).
func guestMMIOHammer() []byte {
	return newAsm().
		emit(0xbb).emit(le32(0x10000000)...). // mov ebx, 0x10000000
		emit(0xb9).emit(le32(4096)...).       // mov ecx, 4096
		label("loop").
		emit(0x8b, 0x03).                       // mov eax, [rbx]
		emit(0x89, 0x03).                       // mov [rbx], eax
		emit(0x81, 0xc3).emit(le32(0x1000)...). // add ebx, 0x1000
		emit(0xff, 0xc9).                       // dec ecx
		j(0x75, "loop").
		debugExit(0x15).
		bytes()
}

// guestTripleFault loads an empty IDT and divides by zero: #DE, #DF, then a
// triple fault. (An "int n" instead stops PVM's instruction emulator with an
// internal error on our hosts.)
func guestTripleFault() []byte {
	return newAsm().
		emit(0x0f, 0x01, 0x1d).emit(le32(6)...). // lidt [rip+6] (the 10 zero bytes after jmp)
		emit(0x31, 0xc9).                        // xor ecx, ecx
		emit(0xf7, 0xf1).                        // div ecx
		emit(0xeb, 0xfe).                        // jmp $
		emit(make([]byte, 10)...).
		bytes()
}

// guestGarbageMMIO reads and writes changing garbage over n dwords from
// base, then exits with 0x16 (exit 45).
func guestGarbageMMIO(base, n uint32) []byte {
	return newAsm().
		emit(0xbb).emit(le32(base)...).       // mov ebx, base
		emit(0xb9).emit(le32(n)...).          // mov ecx, n
		emit(0xb8).emit(le32(0x5a5a5a5a)...). // mov eax, 0x5a5a5a5a
		label("loop").
		emit(0x8b, 0x13).                     // mov edx, [rbx]
		emit(0x89, 0x03).                     // mov [rbx], eax
		emit(0x05).emit(le32(0x9e3779b9)...). // add eax, 0x9e3779b9
		emit(0x83, 0xc3, 0x04).               // add ebx, 4
		emit(0xff, 0xc9).                     // dec ecx
		j(0x75, "loop").
		debugExit(0x16).
		bytes()
}

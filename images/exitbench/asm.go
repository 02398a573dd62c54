package exitbench

import (
	"encoding/binary"
	"fmt"
)

// asm assembles 32-bit protected-mode code loaded at a known address:
// bytes, labels, short and near relative jumps, and absolute label
// addresses (for IDT gates).
type asm struct {
	base   uint32
	b      []byte
	labels map[string]int
	rel8   map[int]string // offset of a rel8 byte -> its label
	rel32  map[int]string // offset of a rel32 field -> its label
	abs32  map[int]string // offset of an absolute address field -> its label
	rows   []string       // the rows emitted so far, in order (guest.go)
}

func newAsm(base uint32) *asm {
	return &asm{base: base, labels: map[string]int{}, rel8: map[int]string{}, rel32: map[int]string{}, abs32: map[int]string{}}
}

func (a *asm) emit(b ...byte) *asm { a.b = append(a.b, b...); return a }

func (a *asm) imm32(v uint32) *asm { a.b = binary.LittleEndian.AppendUint32(a.b, v); return a }

func (a *asm) label(name string) *asm {
	if _, dup := a.labels[name]; dup {
		panic("asm: duplicate label " + name)
	}
	a.labels[name] = len(a.b)
	return a
}

// j emits a short jump (op: 0xeb jmp, 0x74 jz, 0x75 jnz).
func (a *asm) j(op byte, label string) *asm {
	a.b = append(a.b, op, 0)
	a.rel8[len(a.b)-1] = label
	return a
}

// near emits a jump or call with a rel32 (ops: 0xe8 call, 0xe9 jmp, 0x0f 0x85 jnz).
func (a *asm) near(label string, op ...byte) *asm {
	a.emit(op...)
	a.rel32[len(a.b)] = label
	return a.imm32(0)
}

// addr emits the absolute address of label as an imm32.
func (a *asm) addr(label string) *asm {
	a.abs32[len(a.b)] = label
	return a.imm32(0)
}

func (a *asm) bytes() []byte {
	out := append([]byte(nil), a.b...)
	target := func(l string) int {
		t, ok := a.labels[l]
		if !ok {
			panic("asm: no label " + l)
		}
		return t
	}
	for off, l := range a.rel8 {
		rel := target(l) - (off + 1)
		if rel < -128 || rel > 127 {
			panic(fmt.Sprintf("asm: label %q out of reach from %d", l, off))
		}
		out[off] = byte(int8(rel))
	}
	for off, l := range a.rel32 {
		binary.LittleEndian.PutUint32(out[off:], uint32(int32(target(l)-(off+4))))
	}
	for off, l := range a.abs32 {
		binary.LittleEndian.PutUint32(out[off:], a.base+uint32(target(l)))
	}
	return out
}

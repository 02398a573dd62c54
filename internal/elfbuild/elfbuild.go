// Package elfbuild writes small ELF executables for loader tests: a header,
// program headers and segment contents, nothing else.
package elfbuild

import (
	"debug/elf"
	"encoding/binary"
)

// Segment is one program header and its file contents.
type Segment struct {
	Type         elf.ProgType
	Vaddr, Paddr uint64
	Data         []byte
	Memsz        uint64 // 0 means len(Data)
	Align        uint64
}

// Build returns an executable of the given class for machine with the segments
// laid out after the program headers, each at a 16-byte aligned offset.
func Build(class elf.Class, machine elf.Machine, entry uint64, segs []Segment) []byte {
	le := binary.LittleEndian
	hdr, ph := 52, 32
	if class == elf.ELFCLASS64 {
		hdr, ph = 64, 56
	}
	off := hdr + ph*len(segs)
	offs := make([]int, len(segs))
	for i, s := range segs {
		off = (off + 15) &^ 15
		offs[i] = off
		off += len(s.Data)
	}
	b := make([]byte, off)
	copy(b, elf.ELFMAG)
	b[elf.EI_CLASS], b[elf.EI_DATA], b[elf.EI_VERSION] = byte(class), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	le.PutUint16(b[16:], uint16(elf.ET_EXEC))
	le.PutUint16(b[18:], uint16(machine))
	le.PutUint32(b[20:], uint32(elf.EV_CURRENT))
	if class == elf.ELFCLASS64 {
		le.PutUint64(b[24:], entry)
		le.PutUint64(b[32:], uint64(hdr))
		le.PutUint16(b[52:], uint16(hdr))
		le.PutUint16(b[54:], uint16(ph))
		le.PutUint16(b[56:], uint16(len(segs)))
	} else {
		le.PutUint32(b[24:], uint32(entry))
		le.PutUint32(b[28:], uint32(hdr))
		le.PutUint16(b[40:], uint16(hdr))
		le.PutUint16(b[42:], uint16(ph))
		le.PutUint16(b[44:], uint16(len(segs)))
	}
	for i, s := range segs {
		memsz := s.Memsz
		if memsz == 0 {
			memsz = uint64(len(s.Data))
		}
		p := b[hdr+i*ph:]
		if class == elf.ELFCLASS64 {
			le.PutUint32(p, uint32(s.Type))
			le.PutUint64(p[8:], uint64(offs[i]))
			le.PutUint64(p[16:], s.Vaddr)
			le.PutUint64(p[24:], s.Paddr)
			le.PutUint64(p[32:], uint64(len(s.Data)))
			le.PutUint64(p[40:], memsz)
			le.PutUint64(p[48:], s.Align)
		} else {
			le.PutUint32(p, uint32(s.Type))
			le.PutUint32(p[4:], uint32(offs[i]))
			le.PutUint32(p[8:], uint32(s.Vaddr))
			le.PutUint32(p[12:], uint32(s.Paddr))
			le.PutUint32(p[16:], uint32(len(s.Data)))
			le.PutUint32(p[20:], uint32(memsz))
			le.PutUint32(p[28:], uint32(s.Align))
		}
		copy(b[offs[i]:], s.Data)
	}
	return b
}

// Note encodes one ELF note with 4-byte alignment.
func Note(name string, typ uint32, desc []byte) []byte {
	le := binary.LittleEndian
	pad := func(n int) int { return (n + 3) &^ 3 }
	nameLen := len(name) + 1
	b := make([]byte, 12+pad(nameLen)+pad(len(desc)))
	le.PutUint32(b, uint32(nameLen))
	le.PutUint32(b[4:], uint32(len(desc)))
	le.PutUint32(b[8:], typ)
	copy(b[12:], name)
	copy(b[12+pad(nameLen):], desc)
	return b
}

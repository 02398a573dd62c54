// Package elfseg reads what a boot loader needs from an x86 ELF kernel: the
// header, the program headers, loadable segments and notes. It reads no
// section headers: they sit at the end of the file and play no part in
// loading, so a truncated kernel is reported as truncated rather than as a
// broken section table. Every offset and size is bounds-checked; nothing is
// allocated from a size the file claims.
package elfseg

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmmdev/vmm/boot/internal/gmem"
)

// Sentinel errors.
var (
	ErrNotELF      = errors.New("not an ELF file")
	ErrTruncated   = errors.New("truncated ELF file")
	ErrMalformed   = errors.New("malformed ELF file")
	ErrUnsupported = errors.New("unsupported ELF file")
)

// Prog is a program header.
type Prog struct {
	Type                 elf.ProgType
	Off, Vaddr, Paddr    uint64
	Filesz, Memsz, Align uint64
	Data                 []byte // the Filesz bytes at Off (nil for PT_LOAD from ParseFrom)
}

// File is a parsed ELF executable for x86 or x86_64, little endian.
type File struct {
	Class   elf.Class
	Machine elf.Machine
	Entry   uint64
	Progs   []Prog
}

const (
	ident       = 16
	header32    = 52
	header64    = 64
	progSize32  = 32
	progSize64  = 56
	extendedNum = 0xffff // PN_XNUM: the count lives in section 0
)

// Parse reads an ELF file's header and program headers; each PT_LOAD and
// PT_NOTE segment's Data is its bytes in data.
func Parse(data []byte) (*File, error) {
	return parse(uint64(len(data)), func(off, n uint64) ([]byte, error) { return data[off : off+n], nil }, true)
}

// ParseFrom is Parse reading from src, a file of size bytes, only the
// header, the program headers and the notes: a kernel of tens of MiB is not
// read onto the heap. PT_LOAD segments keep Data nil; Load copies them from
// src into guest memory.
func ParseFrom(src io.ReaderAt, size int64) (*File, error) {
	return parse(uint64(max(size, 0)), func(off, n uint64) ([]byte, error) {
		// The callers checked off+n against size: n is no more than the file holds.
		b := make([]byte, n)
		if err := gmem.ReadFull(src, b, int64(off)); err != nil {
			return nil, fmt.Errorf("%w: read %d bytes at %#x: %w", ErrTruncated, n, off, err)
		}
		return b, nil
	}, false)
}

// parse reads the ELF file of size bytes through at, which returns n bytes
// at off (always within size); loads says whether PT_LOAD segments' Data
// is read too.
func parse(size uint64, at func(off, n uint64) ([]byte, error), loads bool) (*File, error) {
	if size < ident {
		return nil, ErrNotELF
	}
	data, err := at(0, min(size, header64))
	if err != nil {
		return nil, err
	}
	if string(data[:4]) != elf.ELFMAG {
		return nil, ErrNotELF
	}
	f := &File{Class: elf.Class(data[elf.EI_CLASS])}
	hdrSize, progSize := header32, progSize32
	switch f.Class {
	case elf.ELFCLASS32:
	case elf.ELFCLASS64:
		hdrSize, progSize = header64, progSize64
	default:
		return nil, fmt.Errorf("%w: class %v", ErrUnsupported, f.Class)
	}
	if d := elf.Data(data[elf.EI_DATA]); d != elf.ELFDATA2LSB {
		return nil, fmt.Errorf("%w: byte order %v", ErrUnsupported, d)
	}
	if size < uint64(hdrSize) {
		return nil, fmt.Errorf("%w: %d bytes, the ELF header needs %d", ErrTruncated, size, hdrSize)
	}
	le := binary.LittleEndian
	typ := elf.Type(le.Uint16(data[16:]))
	f.Machine = elf.Machine(le.Uint16(data[18:]))
	var phoff uint64
	var phentsize, phnum int
	if f.Class == elf.ELFCLASS32 {
		f.Entry = uint64(le.Uint32(data[24:]))
		phoff = uint64(le.Uint32(data[28:]))
		phentsize, phnum = int(le.Uint16(data[42:])), int(le.Uint16(data[44:]))
	} else {
		f.Entry = le.Uint64(data[24:])
		phoff = le.Uint64(data[32:])
		phentsize, phnum = int(le.Uint16(data[54:])), int(le.Uint16(data[56:]))
	}
	if typ != elf.ET_EXEC {
		return nil, fmt.Errorf("%w: type %v, want an executable", ErrUnsupported, typ)
	}
	if f.Machine != elf.EM_386 && f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%w: machine %v", ErrUnsupported, f.Machine)
	}
	if phnum == extendedNum {
		return nil, fmt.Errorf("%w: extended program header count", ErrUnsupported)
	}
	if phnum == 0 {
		return nil, fmt.Errorf("%w: no program headers", ErrMalformed)
	}
	if phentsize < progSize {
		return nil, fmt.Errorf("%w: program header size %d, want at least %d", ErrMalformed, phentsize, progSize)
	}
	end := uint64(phnum) * uint64(phentsize)
	if phoff > size || end > size-phoff {
		return nil, fmt.Errorf("%w: %d program headers at %#x beyond the file's %d bytes", ErrTruncated, phnum, phoff, size)
	}
	phdrs, err := at(phoff, end)
	if err != nil {
		return nil, err
	}
	f.Progs = make([]Prog, phnum) // phnum < 0xffff and each header is in the file
	for i := range f.Progs {
		b := phdrs[i*phentsize:]
		p := &f.Progs[i]
		p.Type = elf.ProgType(le.Uint32(b))
		if f.Class == elf.ELFCLASS32 {
			p.Off, p.Vaddr, p.Paddr = uint64(le.Uint32(b[4:])), uint64(le.Uint32(b[8:])), uint64(le.Uint32(b[12:]))
			p.Filesz, p.Memsz, p.Align = uint64(le.Uint32(b[16:])), uint64(le.Uint32(b[20:])), uint64(le.Uint32(b[28:]))
		} else {
			p.Off, p.Vaddr, p.Paddr = le.Uint64(b[8:]), le.Uint64(b[16:]), le.Uint64(b[24:])
			p.Filesz, p.Memsz, p.Align = le.Uint64(b[32:]), le.Uint64(b[40:]), le.Uint64(b[48:])
		}
		if p.Type != elf.PT_LOAD && p.Type != elf.PT_NOTE {
			continue
		}
		if p.Off > size || p.Filesz > size-p.Off {
			return nil, fmt.Errorf("%w: segment %d [%#x, +%#x) beyond the file's %d bytes", ErrTruncated, i, p.Off, p.Filesz, size)
		}
		if p.Type == elf.PT_NOTE || loads {
			if p.Data, err = at(p.Off, p.Filesz); err != nil {
				return nil, err
			}
		}
		if p.Type == elf.PT_LOAD {
			if p.Filesz > p.Memsz {
				return nil, fmt.Errorf("%w: segment %d has %#x bytes in the file but %#x in memory", ErrMalformed, i, p.Filesz, p.Memsz)
			}
			if p.Paddr+p.Memsz < p.Paddr {
				return nil, fmt.Errorf("%w: segment %d at %#x wraps around", ErrMalformed, i, p.Paddr)
			}
		}
	}
	return f, nil
}

// Loads returns the PT_LOAD segments that occupy memory.
func (f *File) Loads() []Prog {
	var out []Prog
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Memsz > 0 {
			out = append(out, p)
		}
	}
	return out
}

// Extent returns the lowest and the end of the highest physical address the
// loadable segments occupy; ok is false if there are none.
func Extent(loads []Prog) (lo, hi uint64, ok bool) {
	for i, p := range loads {
		if i == 0 || p.Paddr < lo {
			lo = p.Paddr
		}
		hi = max(hi, p.Paddr+p.Memsz)
	}
	return lo, hi, len(loads) > 0
}

// Load copies the segments from src, the file they were parsed from, to
// their physical addresses and clears the part of each beyond its file data
// (the bss).
func Load(mem io.WriterAt, loads []Prog, src io.ReaderAt) error {
	for _, p := range loads {
		if err := gmem.Copy(mem, p.Paddr, src, int64(p.Off), p.Filesz); err != nil {
			return fmt.Errorf("load segment at %#x: %w", p.Paddr, err)
		}
		if err := gmem.Zero(mem, p.Paddr+p.Filesz, p.Memsz-p.Filesz); err != nil {
			return fmt.Errorf("clear bss of segment at %#x: %w", p.Paddr, err)
		}
	}
	return nil
}

// Note is one ELF note.
type Note struct {
	Name string
	Type uint32
	Desc []byte
}

// Notes returns the notes of every PT_NOTE segment.
func (f *File) Notes() ([]Note, error) {
	var out []Note
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		// Notes are 4-byte aligned unless the segment says 8 (gABI).
		align := uint64(4)
		if p.Align == 8 {
			align = 8
		}
		notes, err := parseNotes(p.Data, align)
		if err != nil {
			return nil, err
		}
		out = append(out, notes...)
	}
	return out, nil
}

func parseNotes(b []byte, align uint64) ([]Note, error) {
	le := binary.LittleEndian
	var out []Note
	// Fewer bytes than a note header are padding.
	for len(b) >= 12 {
		namesz, descsz := uint64(le.Uint32(b)), uint64(le.Uint32(b[4:]))
		descOff := alignUp(12+namesz, align)
		next := alignUp(descOff+descsz, align)
		if descOff+descsz > uint64(len(b)) {
			return nil, fmt.Errorf("%w: note of %d+%d bytes overruns its segment", ErrMalformed, namesz, descsz)
		}
		name := b[12 : 12+namesz]
		if n := len(name); n > 0 && name[n-1] == 0 {
			name = name[:n-1]
		}
		out = append(out, Note{Name: string(name), Type: le.Uint32(b[8:]), Desc: b[descOff : descOff+descsz]})
		b = b[min(next, uint64(len(b))):]
	}
	return out, nil
}

func alignUp(x, a uint64) uint64 { return (x + a - 1) &^ (a - 1) }

// Package shadow is the i440FX's shadow RAM for the legacy BIOS area
// (0xa0000-0xfffff): the PAM registers of the host bridge switch each
// segment of 0xc0000-0xfffff between ROM (the firmware image's alias, or
// nothing) and RAM, readable and writable separately, as firmware expects
// when it copies itself to RAM and locks it; the VGA window 0xa0000-0xbffff
// has no display behind it. What KVM maps follows the registers, through a
// small SlotMapper; what it cannot map (writes to ROM or to locked RAM,
// reads where nothing decodes) exits to Area's MMIO handler.
package shadow

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/vmmdev/vmm/layout"
)

// The PAM registers in the host bridge's configuration space: PAM0 at 0x59,
// PAM1-PAM6 after it.
const (
	PAMRegister  = 0x59
	PAMRegisters = 7
)

// PAMWritable are the bits of PAM0-PAM6 a guest can change: PAM0's low
// nibble is reserved.
func PAMWritable() []byte { return []byte{0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff} }

// Per-nibble PAM attributes.
const (
	readRAM  = 1 // reads come from RAM (else ROM or the bus)
	writeRAM = 2 // writes go to RAM (else dropped)
)

// Segments is how many PAM-controlled segments there are: twelve of 16 KiB
// (0xc0000-0xeffff) and the 64 KiB BIOS segment; each takes one slot.
const Segments = 13

const (
	smallSegSize = 16 << 10
	biosSegSize  = 64 << 10
	biosSegStart = 0xf0000
)

// SlotMapper maps guest-physical memory; the machine's KVM memory slots
// implement it. host nil unmaps the slot.
type SlotMapper interface {
	MapSlot(slot uint32, gpa uint64, host []byte, readOnly bool) error
}

// RAM is guest memory.
type RAM interface {
	Slice(gpa, n uint64) ([]byte, error)
	ReadAt(p []byte, gpa int64) (int, error)
	WriteAt(p []byte, gpa int64) (int, error)
}

// segment is one PAM-controlled segment of 0xc0000-0xfffff.
type segment struct {
	start, size uint64
	reg         int  // index into the PAM registers
	shift       uint // 0: low nibble, 4: high nibble
	state       byte // readRAM | writeRAM
	mapped      bool // a slot covers it
}

// Shadow is the shadow RAM state of one machine.
type Shadow struct {
	slots     SlotMapper
	ram       RAM
	rom       []byte // the firmware image; its tail is aliased below 1 MiB
	firstSlot uint32 // segment i uses slot firstSlot+i
	log       *slog.Logger

	mu   sync.Mutex
	segs [Segments]segment
}

// New returns the shadow RAM at reset (every PAM register 0: each segment
// reads the ROM alias or nothing, and drops writes). Map puts that into
// effect.
func New(slots SlotMapper, ram RAM, rom []byte, firstSlot uint32, log *slog.Logger) *Shadow {
	s := &Shadow{slots: slots, ram: ram, rom: rom, firstSlot: firstSlot, log: log}
	for i := range s.segs {
		g := &s.segs[i]
		if i < 12 {
			g.start, g.size = layout.ShadowStart+uint64(i)*smallSegSize, smallSegSize
			g.reg, g.shift = 1+i/2, uint(4*(i%2))
		} else {
			g.start, g.size, g.reg, g.shift = biosSegStart, biosSegSize, 0, 4
		}
	}
	return s
}

// Map maps every segment as its state says; call it before the vCPUs run.
func (s *Shadow) Map() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.segs {
		if err := s.remap(i); err != nil {
			return err
		}
	}
	return nil
}

// romAt is the image byte range aliased at [gpa, gpa+n), if the alias
// covers it: the image's last 128 KiB (or all of a smaller one) end at 1 MiB.
func (s *Shadow) romAt(gpa, n uint64) ([]byte, bool) {
	alias := min(uint64(len(s.rom)), layout.BIOSAliasSize)
	base := uint64(layout.ShadowEnd) - alias
	if gpa < base || gpa+n > layout.ShadowEnd {
		return nil, false
	}
	off := uint64(len(s.rom)) - (layout.ShadowEnd - gpa)
	return s.rom[off : off+n], true
}

// remap makes the mapping of segment i match its PAM state: RAM (read-only
// when writes are off) when reads come from RAM, else the ROM alias
// read-only, else nothing (Area answers). Called with mu held. The slot is
// dropped first because KVM cannot change a slot's address or read-only
// flag in place; accesses in between exit to Area, which follows the new
// state.
func (s *Shadow) remap(i int) error {
	g := &s.segs[i]
	slot := s.firstSlot + uint32(i)
	if g.mapped {
		if err := s.slots.MapSlot(slot, g.start, nil, false); err != nil {
			return fmt.Errorf("unmap shadow segment %#x: %w", g.start, err)
		}
		g.mapped = false
	}
	var host []byte
	readOnly := true
	if g.state&readRAM != 0 {
		h, err := s.ram.Slice(g.start, g.size)
		if err != nil {
			return err
		}
		host, readOnly = h, g.state&writeRAM == 0
	} else if r, ok := s.romAt(g.start, g.size); ok {
		host = r
	}
	if host == nil {
		return nil
	}
	if err := s.slots.MapSlot(slot, g.start, host, readOnly); err != nil {
		return fmt.Errorf("map shadow segment %#x: %w", g.start, err)
	}
	g.mapped = true
	return nil
}

// PAMWritten applies the PAM registers (PAM0-PAM6) after a guest write;
// its signature is the host bridge's register callback.
func (s *Shadow) PAMWritten(regs []byte, _, _ int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.segs {
		g := &s.segs[i]
		st := regs[g.reg] >> g.shift & (readRAM | writeRAM)
		if st == g.state {
			continue
		}
		g.state = st
		if err := s.remap(i); err != nil {
			// Area still gives the segment its meaning.
			s.log.Warn("shadow RAM remap", "err", err)
		}
	}
}

// segment returns the shadow segment holding gpa.
func (s *Shadow) segment(gpa uint64) *segment {
	for i := range s.segs {
		if g := &s.segs[i]; gpa >= g.start && gpa < g.start+g.size {
			return g
		}
	}
	return nil
}

// AreaBase and AreaSize bound the MMIO range Area answers.
const (
	AreaBase = layout.LegacyVGA
	AreaSize = layout.ShadowEnd - layout.LegacyVGA
)

// Area answers MMIO exits in 0xa0000-0xfffff (register it at AreaBase):
// the VGA window (no display: reads all ones, writes dropped), and shadow
// segments whose current mapping cannot take the access.
func (s *Shadow) Area() *Area { return &Area{s} }

// Area is the MMIO side of the BIOS area.
type Area struct{ s *Shadow }

func (a *Area) Read(off uint64, data []byte) {
	s := a.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range data {
		data[i] = 0xff
		gpa := AreaBase + off + uint64(i)
		g := s.segment(gpa)
		switch {
		case g == nil:
		case g.state&readRAM != 0:
			_, _ = s.ram.ReadAt(data[i:i+1], int64(gpa))
		default:
			if r, ok := s.romAt(gpa, 1); ok {
				data[i] = r[0]
			}
		}
	}
}

func (a *Area) Write(off uint64, data []byte) {
	s := a.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range data {
		gpa := AreaBase + off + uint64(i)
		if g := s.segment(gpa); g != nil && g.state&writeRAM != 0 {
			_, _ = s.ram.WriteAt(data[i:i+1], int64(gpa))
		}
	}
}

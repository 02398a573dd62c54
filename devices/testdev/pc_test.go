package testdev

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestScratchByteLanes(t *testing.T) {
	p := NewPC(nil, nil)
	s := p.Scratch()
	s.Write(0, []byte{1, 2, 3, 4})
	got := make([]byte, 4)
	s.Read(0, got)
	require.Equal(t, []byte{1, 2, 3, 4}, got)
	s.Write(1, []byte{0xaa, 0xbb}) // bytes 1 and 2; 0 and 3 kept
	s.Read(0, got)
	require.Equal(t, []byte{1, 0xaa, 0xbb, 4}, got)
	b := make([]byte, 1)
	s.Read(3, b)
	require.Equal(t, []byte{4}, b)
	w := make([]byte, 2)
	s.Read(2, w)
	require.Equal(t, []byte{0xbb, 4}, w)
	// One register behind both windows.
	require.Equal(t, uint32(0x04bbaa01), p.scratch)
}

func TestFlush(t *testing.T) {
	var flushed []uint64
	p := NewPC(func(gpa uint64) { flushed = append(flushed, gpa) }, nil)
	p.Flush().Write(0, binary.LittleEndian.AppendUint32(nil, 0x12345678))
	p.Flush().Write(0, []byte{1}) // not a 32-bit write: ignored
	require.Equal(t, []uint64{0x12345000}, flushed)
	b := []byte{0xff, 0xff, 0xff, 0xff}
	p.Flush().Read(0, b)
	require.Equal(t, make([]byte, 4), b)
}

func TestIRQLines(t *testing.T) {
	type ev struct {
		line uint32
		high bool
	}
	var got []ev
	p := NewPC(nil, func(line uint32, high bool) { got = append(got, ev{line, high}) })
	p.IRQ().Write(10, []byte{1})
	p.IRQ().Write(10, []byte{0})
	p.IRQ().Write(23, []byte{0, 0, 1, 0})
	p.IRQ().Write(24, []byte{1}) // beyond line 23
	require.Equal(t, []ev{{10, true}, {10, false}, {23, true}}, got)
	NewPC(nil, nil).IRQ().Write(3, []byte{1}) // no line: nothing breaks
}

func TestMMIO(t *testing.T) {
	m := NewPC(nil, nil).MMIO()
	m.Write(0x10, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	m.Write(MMIOSize-2, []byte{9, 9, 9, 9}) // clipped at the end
	got := make([]byte, 8)
	m.Read(0x12, got)
	require.Equal(t, []byte{3, 4, 5, 6, 7, 8, 0, 0}, got)
	m.Read(MMIOSize-2, got[:4])
	require.Equal(t, []byte{9, 9, 0, 0}, got[:4])
	m.Read(MMIOSize, got[:2])
	require.Equal(t, []byte{0, 0}, got[:2])
}

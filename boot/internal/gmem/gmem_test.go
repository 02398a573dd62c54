package gmem

import (
	"bytes"
	"errors"
	"io"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/boot/internal/fakemem"
)

func TestWriteAndZero(t *testing.T) {
	mem := fakemem.New(1 << 20)
	require.NoError(t, Write(mem, 0x1000, []byte{1, 2, 3}))
	require.Equal(t, []byte{1, 2, 3}, mem.Read(0x1000, 3))

	ones := make([]byte, 200<<10)
	for i := range ones {
		ones[i] = 0xff
	}
	require.NoError(t, Write(mem, 0x10000, ones))
	// More than one chunk, unaligned at both ends.
	require.NoError(t, Zero(mem, 0x10001, uint64(len(ones))-2))
	got := mem.Read(0x10000, uint64(len(ones)))
	require.Equal(t, byte(0xff), got[0])
	require.Equal(t, byte(0xff), got[len(got)-1])
	require.False(t, mem.Dirty(0x10001, uint64(len(ones))-2))
	require.NoError(t, Zero(mem, 0, 0))
}

func TestWriteErrors(t *testing.T) {
	mem := fakemem.New(0x1000)
	err := Write(mem, 0xfff, []byte{1, 2})
	require.ErrorIs(t, err, fakemem.ErrOutOfRange)
	require.ErrorContains(t, err, "0xfff")
	require.Error(t, Write(mem, math.MaxUint64, []byte{1}))
	require.ErrorIs(t, Zero(mem, 0x800, 0x1000), fakemem.ErrOutOfRange)
	require.ErrorIs(t, Write(shortWriter{}, 0, []byte{1, 2}), io.ErrShortWrite)
}

type shortWriter struct{}

func (shortWriter) WriteAt(p []byte, _ int64) (int, error) {
	if len(p) == 0 {
		return 0, errors.New("empty")
	}
	return len(p) - 1, nil
}

// sliceMem is guest memory with a host view, as vmm's Memory.
type sliceMem []byte

func (m sliceMem) Slice(gpa, n uint64) ([]byte, error) {
	if gpa > uint64(len(m)) || n > uint64(len(m))-gpa {
		return nil, errors.New("out of range")
	}
	return m[gpa : gpa+n], nil
}

func (m sliceMem) WriteAt(p []byte, off int64) (int, error) {
	b, err := m.Slice(uint64(off), uint64(len(p)))
	if err != nil {
		return 0, err
	}
	return copy(b, p), nil
}

// Copy reads straight into memory with a host view and through a bounce
// buffer otherwise; a source shorter than asked is an error either way.
func TestCopy(t *testing.T) {
	src := make([]byte, 3*copyChunk+100)
	for i := range src {
		src[i] = byte(i * 7)
	}
	sm := make(sliceMem, 1<<20)
	require.NoError(t, Copy(sm, 0x1000, bytes.NewReader(src), 50, uint64(len(src)-50)))
	require.Equal(t, src[50:], []byte(sm[0x1000:0x1000+len(src)-50]))

	fm := fakemem.New(1 << 20)
	require.NoError(t, Copy(fm, 0x2000, bytes.NewReader(src), 0, uint64(len(src))))
	require.Equal(t, src, fm.Read(0x2000, uint64(len(src))))

	require.ErrorIs(t, Copy(sm, 0, bytes.NewReader(src), 0, uint64(len(src)+1)), io.ErrUnexpectedEOF)
	require.ErrorIs(t, Copy(fm, 0, bytes.NewReader(src), 0, uint64(len(src)+1)), io.ErrUnexpectedEOF)
	require.Error(t, Copy(sm, 1<<20-10, bytes.NewReader(src), 0, 100), "beyond guest memory")
	require.Error(t, Copy(sm, math.MaxUint64-1, bytes.NewReader(src), 0, 100))
	require.NoError(t, Copy(sm, 0, bytes.NewReader(nil), 0, 0))
}

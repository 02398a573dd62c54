package gmem

import (
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

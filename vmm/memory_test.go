package vmm

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/layout"
)

func TestMemoryBounds(t *testing.T) {
	m, err := NewMemory(1 << 20)
	require.NoError(t, err)
	defer m.Close()

	_, err = m.WriteAt([]byte{1, 2, 3, 4}, 0xffffc)
	require.NoError(t, err)
	got := make([]byte, 4)
	_, err = m.ReadAt(got, 0xffffc)
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2, 3, 4}, got)

	for _, gpa := range []int64{0xffffd, 1 << 20, -1, 1<<63 - 1} {
		_, err := m.WriteAt([]byte{1, 2, 3, 4}, gpa)
		require.True(t, errors.Is(err, ErrOutOfRange), "write at %#x: %v", gpa, err)
		_, err = m.ReadAt(got, gpa)
		require.True(t, errors.Is(err, ErrOutOfRange), "read at %#x: %v", gpa, err)
	}
	_, err = m.Slice(0, 1<<64-1)
	require.ErrorIs(t, err, ErrOutOfRange)
}

func TestMemorySplitAroundHole(t *testing.T) {
	size := uint64(layout.MMIOHoleStart) + 1<<20
	m, err := NewMemory(size)
	require.NoError(t, err)
	defer m.Close()
	require.Len(t, m.Regions(), 2)

	// An access straddling the end of low RAM is refused, even though the
	// bytes on both sides exist elsewhere.
	_, err = m.WriteAt([]byte{1, 2}, layout.MMIOHoleStart-1)
	require.ErrorIs(t, err, ErrOutOfRange)
	_, err = m.WriteAt([]byte{9}, layout.MMIOHoleEnd+1<<20-1)
	require.NoError(t, err)
	_, err = m.WriteAt([]byte{9}, layout.MMIOHoleEnd+1<<20)
	require.ErrorIs(t, err, ErrOutOfRange)
	_, err = m.WriteAt([]byte{9}, layout.MMIOHoleStart)
	require.ErrorIs(t, err, ErrOutOfRange)
}

func TestMemoryHugeAligned(t *testing.T) {
	m, err := NewMemory(6 << 20)
	require.NoError(t, err)
	defer m.Close()
	require.Zero(t, uintptrOf(m.host(0))%hugePage, "guest RAM starts on a 2 MiB boundary")
	require.Len(t, m.host(0), 6<<20)
	// The whole range is usable.
	_, err = m.WriteAt([]byte{1}, 6<<20-1)
	require.NoError(t, err)
}

func TestMemoryZeroSize(t *testing.T) {
	_, err := NewMemory(0)
	require.Error(t, err)
}

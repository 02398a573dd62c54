package gpadl

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

type flatMem uint64 // RAM size from GPA 0

func (m flatMem) Slice(gpa, n uint64) ([]byte, error) {
	if gpa > uint64(m) || n > uint64(m)-gpa {
		return nil, fmt.Errorf("[%#x, +%#x) outside RAM", gpa, n)
	}
	return make([]byte, n), nil
}

const ram = flatMem(64 << 20)

// header builds a GPADL_HEADER as Linux does for a buffer of pages pages
// at first PFN first, carrying the first inHeader PFNs.
func header(relid, id uint32, pages, inHeader int, first uint64) []byte {
	m := make([]byte, HeaderFixed+8*inHeader)
	binary.LittleEndian.PutUint32(m[0:], 8)
	binary.LittleEndian.PutUint32(m[8:], relid)
	binary.LittleEndian.PutUint32(m[12:], id)
	binary.LittleEndian.PutUint16(m[16:], uint16(8+8*pages))
	binary.LittleEndian.PutUint16(m[18:], 1)
	binary.LittleEndian.PutUint32(m[20:], uint32(pages*pageSize))
	for i := range inHeader {
		binary.LittleEndian.PutUint64(m[HeaderFixed+8*i:], first+uint64(i))
	}
	return m
}

func body(id uint32, from uint64, n int) []byte {
	m := make([]byte, BodyFixed+8*n)
	binary.LittleEndian.PutUint32(m[0:], 9)
	binary.LittleEndian.PutUint32(m[12:], id)
	for i := range n {
		binary.LittleEndian.PutUint64(m[BodyFixed+8*i:], from+uint64(i))
	}
	return m
}

func TestAssembleHeaderAndBodies(t *testing.T) {
	tb := New(ram, DefaultLimits)
	// A 16 MiB receive buffer: 4096 PFNs, 26 in the header, 28 per body.
	id, relid, g, err := tb.Header(header(5, 0xe1e10, 4096, 26, 0x100))
	require.NoError(t, err)
	require.Nil(t, g)
	require.Equal(t, uint32(0xe1e10), id)
	require.Equal(t, uint32(5), relid)
	next := uint64(0x100 + 26)
	bodies := 0
	for left := 4096 - 26; left > 0; {
		n := min(left, 28)
		id, relid, g, err = tb.Body(body(0xe1e10, next, n))
		require.Equal(t, uint32(5), relid)
		require.NoError(t, err)
		require.Equal(t, uint32(0xe1e10), id)
		next += uint64(n)
		left -= n
		bodies++
		if left > 0 {
			require.Nil(t, g)
		}
	}
	require.Equal(t, 146, bodies)
	require.NotNil(t, g)
	require.Len(t, g.PFNs, 4096)
	for i, p := range g.PFNs {
		require.Equal(t, uint64(0x100+i), p)
	}
	got, ok := tb.Get(0xe1e10)
	require.True(t, ok)
	require.Same(t, g, got)
	require.Equal(t, 4096, tb.Pages())
	require.NoError(t, tb.Remove(0xe1e10))
	require.ErrorIs(t, tb.Remove(0xe1e10), ErrUnknown)
	require.Zero(t, tb.Pages())
	require.Zero(t, tb.Len())
}

func TestHeaderAlone(t *testing.T) {
	tb := New(ram, DefaultLimits)
	_, _, g, err := tb.Header(header(1, 7, 4, 4, 0x10))
	require.NoError(t, err)
	require.Equal(t, []uint64{0x10, 0x11, 0x12, 0x13}, g.PFNs)
	_, _, _, err = tb.Header(header(1, 7, 4, 4, 0x10))
	require.ErrorIs(t, err, ErrInvalid, "id in use")
	_, ok := tb.Get(7)
	require.True(t, ok, "the first GPADL with that id stays")
}

func TestRejects(t *testing.T) {
	cases := map[string]func() []byte{
		"short":          func() []byte { return make([]byte, HeaderFixed-1) },
		"two ranges":     func() []byte { m := header(1, 1, 2, 2, 0); m[18] = 2; return m },
		"no PFNs":        func() []byte { m := header(1, 1, 2, 0, 0); binary.LittleEndian.PutUint16(m[16:], 8); return m },
		"buflen ragged":  func() []byte { m := header(1, 1, 2, 2, 0); m[16]++; return m },
		"count mismatch": func() []byte { m := header(1, 1, 2, 2, 0); binary.LittleEndian.PutUint32(m[20:], 3*pageSize); return m },
		"zero bytes":     func() []byte { m := header(1, 1, 1, 1, 0); binary.LittleEndian.PutUint32(m[20:], 0); return m },
		"offset a page":  func() []byte { m := header(1, 1, 1, 1, 0); binary.LittleEndian.PutUint32(m[24:], pageSize); return m },
		"too many PFNs":  func() []byte { return append(header(1, 1, 2, 2, 0), make([]byte, 8)...) },
		"ragged PFNs":    func() []byte { return append(header(1, 1, 3, 2, 0), 1) },
		"beyond RAM":     func() []byte { return header(1, 1, 2, 2, uint64(ram)/pageSize-1) },
		"MMIO hole":      func() []byte { return header(1, 1, 1, 1, 0xfee00) },
		"PFN overflows":  func() []byte { return header(1, 1, 1, 1, 1<<60) },
	}
	for name, msg := range cases {
		t.Run(name, func(t *testing.T) {
			tb := New(ram, DefaultLimits)
			_, _, g, err := tb.Header(msg())
			require.ErrorIs(t, err, ErrInvalid)
			require.Nil(t, g)
			require.Zero(t, tb.Len(), "nothing kept")
			require.Zero(t, tb.Pages())
		})
	}
}

func TestBodyErrors(t *testing.T) {
	tb := New(ram, DefaultLimits)
	_, _, _, err := tb.Header(header(1, 3, 30, 26, 0))
	require.NoError(t, err)
	_, _, _, err = tb.Body(body(4, 26, 4))
	require.ErrorIs(t, err, ErrUnknown)
	_, _, _, err = tb.Body(make([]byte, BodyFixed-1))
	require.ErrorIs(t, err, ErrInvalid)
	_, _, _, err = tb.Body(body(3, 26, 5))
	require.ErrorIs(t, err, ErrInvalid, "one PFN too many")
	require.Zero(t, tb.Len(), "the pending GPADL is gone")
	require.Zero(t, tb.Pages())
	_, _, _, err = tb.Body(body(3, 26, 4))
	require.ErrorIs(t, err, ErrUnknown)

	// A pending GPADL can be torn down too.
	_, _, _, err = tb.Header(header(1, 3, 30, 26, 0))
	require.NoError(t, err)
	require.NoError(t, tb.Remove(3))
	require.Zero(t, tb.Pages())
}

func TestLimits(t *testing.T) {
	tb := New(ram, Limits{Count: 3, TotalPages: 100})
	for id := range uint32(2) {
		_, _, _, err := tb.Header(header(1, id, 40, 1, 0)) // pending: 39 PFNs to come
		require.NoError(t, err)
	}
	_, _, _, err := tb.Header(header(1, 9, 40, 1, 0))
	require.ErrorIs(t, err, ErrLimit, "80 + 40 PFNs > 100")
	_, _, _, err = tb.Header(header(1, 9, 20, 1, 0))
	require.NoError(t, err)
	_, _, _, err = tb.Header(header(1, 10, 1, 1, 0))
	require.ErrorIs(t, err, ErrLimit, "three GPADLs already")
	tb.Reset()
	require.Zero(t, tb.Len())
	_, _, _, err = tb.Header(header(1, 10, 1, 1, 0))
	require.NoError(t, err)
}

// Overlapping GPADLs are legal (the guest's business); each stands alone.
func TestOverlapping(t *testing.T) {
	tb := New(ram, DefaultLimits)
	_, _, a, err := tb.Header(header(1, 1, 4, 4, 0x10))
	require.NoError(t, err)
	_, _, b, err := tb.Header(header(2, 2, 4, 4, 0x12))
	require.NoError(t, err)
	require.Equal(t, a.PFNs[2:], b.PFNs[:2])
	require.NoError(t, tb.Remove(1))
	_, ok := tb.Get(2)
	require.True(t, ok)
}

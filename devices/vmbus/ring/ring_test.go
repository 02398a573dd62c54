package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/internal/fakeram"
)

// flatMem is guest RAM from GPA 0; Slice fails past its end, as vmm's
// Memory does past RAM.
type flatMem = fakeram.RAM

func pfns(first, n int) []uint64 {
	p := make([]uint64, n)
	for i := range p {
		p[i] = uint64(first + i)
	}
	return p
}

// guestRing is the guest's side of one ring, written here from the
// protocol description (hyperv.h, ring_buffer.c) independently of the
// code under test.
type guestRing struct {
	m    flatMem
	hdr  uint64 // GPA of the header page
	size uint32
}

func (g guestRing) u32(off uint64) uint32 { return binary.LittleEndian.Uint32(g.m[g.hdr+off:]) }
func (g guestRing) set(off uint64, v uint32) {
	binary.LittleEndian.PutUint32(g.m[g.hdr+off:], v)
}
func (g guestRing) data(off uint32) *byte { return &g.m[g.hdr+PageSize+uint64(off%g.size)] }

// write puts a packet the way Linux's hv_ringbuffer_write does and reports
// whether the host must be signalled.
func (g guestRing) write(typ, flags uint16, id uint64, payload []byte) (bool, error) {
	total := uint32(DescriptorSize+len(payload)+7) &^ 7
	w, r := g.u32(offWrite), g.u32(offRead)
	free := g.size - (w+g.size-r)%g.size
	if total+8 >= free {
		return false, ErrFull
	}
	pkt := make([]byte, total+8)
	binary.LittleEndian.PutUint16(pkt[0:], typ)
	binary.LittleEndian.PutUint16(pkt[2:], DescriptorSize/8)
	binary.LittleEndian.PutUint16(pkt[4:], uint16(total/8))
	binary.LittleEndian.PutUint16(pkt[6:], flags)
	binary.LittleEndian.PutUint64(pkt[8:], id)
	copy(pkt[DescriptorSize:], payload)
	binary.LittleEndian.PutUint64(pkt[total:], uint64(w)<<32)
	for i, b := range pkt {
		*g.data(w + uint32(i)) = b
	}
	g.set(offWrite, (w+total+8)%g.size)
	return g.u32(offIntMask) == 0 && r == w, nil
}

// read takes one packet as Linux's reader does: descriptor fields and
// payload, or ok false when empty.
func (g guestRing) read() (typ uint16, id uint64, payload []byte, ok bool) {
	w, r := g.u32(offWrite), g.u32(offRead)
	if w == r {
		return 0, 0, nil, false
	}
	get := func(off uint32, n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = *g.data(off + uint32(i))
		}
		return b
	}
	d := get(r, DescriptorSize)
	off := uint32(binary.LittleEndian.Uint16(d[2:])) * 8
	n := uint32(binary.LittleEndian.Uint16(d[4:])) * 8
	body := get(r, int(n))
	trailer := binary.LittleEndian.Uint64(get(r+n, 8))
	if uint32(trailer>>32) != r {
		panic(fmt.Sprintf("trailer %#x for a packet at %#x", trailer, r))
	}
	g.set(offRead, (r+n+8)%g.size)
	return binary.LittleEndian.Uint16(d[0:]), binary.LittleEndian.Uint64(d[8:]), body[off:], true
}

// pair makes a 2+2 page ring pair (8 KiB data areas would be too roomy
// for wrap tests: one data page each).
func pair(t *testing.T) (flatMem, *Reader, *Writer, guestRing, guestRing) {
	t.Helper()
	m := make(flatMem, 8*PageSize)
	r, err := NewReader(m, pfns(0, 2))
	require.NoError(t, err)
	w, err := NewWriter(m, pfns(2, 2))
	require.NoError(t, err)
	return m, r, w, guestRing{m, 0, PageSize}, guestRing{m, 2 * PageSize, PageSize}
}

func TestRoundTripAndWrap(t *testing.T) {
	_, r, w, gin, gout := pair(t)
	for i := range 200 {
		payload := make([]byte, 1+(i*37)%300)
		for j := range payload {
			payload[j] = byte(i + j)
		}
		// Guest to host.
		signal, err := gin.write(TypeDataInband, FlagCompletionRequest, uint64(i), payload)
		require.NoError(t, err)
		require.True(t, signal, "ring was empty: the guest signals")
		p, ok, err := r.Next(nil)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, uint16(TypeDataInband), p.Type)
		require.Equal(t, uint16(FlagCompletionRequest), p.Flags)
		require.Equal(t, uint64(i), p.TransID)
		require.Empty(t, p.Header)
		require.Equal(t, payload, p.Payload[:len(payload)])
		require.Len(t, p.Payload, (len(payload)+7)&^7)
		_, ok, err = r.Next(nil)
		require.NoError(t, err)
		require.False(t, ok)
		require.False(t, r.Done())

		// Host to guest, split into parts.
		signal, err = w.Write(TypeCompletion, 0, uint64(1000+i), nil, payload[:len(payload)/2], payload[len(payload)/2:])
		require.NoError(t, err)
		require.True(t, signal)
		typ, id, got, ok := gout.read()
		require.True(t, ok)
		require.Equal(t, uint16(TypeCompletion), typ)
		require.Equal(t, uint64(1000+i), id)
		require.Equal(t, payload, got[:len(payload)])
	}
}

func TestReaderPending(t *testing.T) {
	_, r, _, gin, _ := pair(t)
	require.False(t, r.Pending())
	_, err := gin.write(TypeDataInband, 0, 1, []byte{1})
	require.NoError(t, err)
	_, err = gin.write(TypeDataInband, 0, 2, []byte{2})
	require.NoError(t, err)
	require.True(t, r.Pending())
	p, ok, err := r.Next(nil)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(1), p.TransID)
	require.True(t, r.Pending(), "a second packet is still there")
	_, _, err = r.Next(nil)
	require.NoError(t, err)
	require.False(t, r.Pending(), "Pending consumed nothing: both came out of Next")
	// A bad guest index reads as pending, for Next to report.
	gin.set(offWrite, 12)
	require.True(t, r.Pending())
	_, _, err = r.Next(nil)
	require.ErrorIs(t, err, ErrBroken)
	require.True(t, r.Pending())
}

func TestWriterSignalsOnlyAnEmptyUnmaskedRing(t *testing.T) {
	_, _, w, _, gout := pair(t)
	s, err := w.Write(TypeDataInband, 0, 1, nil, []byte("a"))
	require.NoError(t, err)
	require.True(t, s)
	s, err = w.Write(TypeDataInband, 0, 2, nil, []byte("b"))
	require.NoError(t, err)
	require.False(t, s, "ring was not empty")
	for {
		if _, _, _, ok := gout.read(); !ok {
			break
		}
	}
	gout.set(offIntMask, 1)
	s, err = w.Write(TypeDataInband, 0, 3, nil, []byte("c"))
	require.NoError(t, err)
	require.False(t, s, "guest masked interrupts")
}

func TestWriterFullAndPendingSendSize(t *testing.T) {
	_, _, w, _, gout := pair(t)
	require.Equal(t, uint32(FeaturePendingSendSize), gout.u32(offFeatures)&1)
	payload := make([]byte, 1000)
	n := 0
	for {
		_, err := w.Write(TypeDataInband, 0, uint64(n), nil, payload)
		if errors.Is(err, ErrFull) {
			break
		}
		require.NoError(t, err)
		n++
	}
	require.Equal(t, 3, n, "4096-byte ring takes three 1032-byte packets, never a fourth")
	want := uint32(PacketSize(0, 1000))
	require.Equal(t, want, gout.u32(offPendingSnd))
	_, _, _, ok := gout.read()
	require.True(t, ok)
	_, err := w.Write(TypeDataInband, 0, 9, nil, payload)
	require.NoError(t, err)
	require.Zero(t, gout.u32(offPendingSnd), "cleared once written")

	_, err = w.Write(TypeDataInband, 0, 9, nil, make([]byte, PageSize))
	require.ErrorIs(t, err, ErrTooLarge)
	_, err = w.Write(TypeDataInband, 0, 9, make([]byte, 4))
	require.Error(t, err, "header not a multiple of 8")
}

func TestReaderSignalsWaitingWriter(t *testing.T) {
	_, r, _, gin, _ := pair(t)
	payload := make([]byte, 1000)
	for range 3 {
		_, err := gin.write(TypeDataInband, 0, 1, payload)
		require.NoError(t, err)
	}
	_, err := gin.write(TypeDataInband, 0, 1, payload)
	require.ErrorIs(t, err, ErrFull)
	// The guest asks for 1040 bytes of room, as netvsc does.
	gin.set(offFeatures, FeaturePendingSendSize)
	gin.set(offPendingSnd, 1040)
	_, ok, err := r.Next(nil)
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, r.Done(), "free space went from 1024 to 2048, past 1040")
	_, ok, err = r.Next(nil)
	require.NoError(t, err)
	require.True(t, ok)
	require.False(t, r.Done(), "already past pending_send_sz before this batch")
	gin.set(offFeatures, 0)
	_, ok, err = r.Next(nil)
	require.NoError(t, err)
	require.True(t, ok)
	require.False(t, r.Done(), "no signal without the feature bit")
}

func TestHostileIndices(t *testing.T) {
	cases := map[string]func(g guestRing){
		"write index past the ring": func(g guestRing) { g.set(offWrite, PageSize) },
		"write index unaligned":     func(g guestRing) { g.set(offWrite, 12) },
		"too few bytes":             func(g guestRing) { g.set(offWrite, 16) },
		"length beyond available": func(g guestRing) {
			binary.LittleEndian.PutUint16(g.m[g.hdr+PageSize+2:], 2)
			binary.LittleEndian.PutUint16(g.m[g.hdr+PageSize+4:], 100)
			g.set(offWrite, 64)
		},
		"offset beyond length": func(g guestRing) {
			binary.LittleEndian.PutUint16(g.m[g.hdr+PageSize+2:], 5)
			binary.LittleEndian.PutUint16(g.m[g.hdr+PageSize+4:], 4)
			g.set(offWrite, 40)
		},
		"zero offset": func(g guestRing) {
			binary.LittleEndian.PutUint16(g.m[g.hdr+PageSize+4:], 2)
			g.set(offWrite, 24)
		},
	}
	for name, corrupt := range cases {
		t.Run(name, func(t *testing.T) {
			_, r, _, gin, _ := pair(t)
			corrupt(gin)
			_, ok, err := r.Next(nil)
			require.ErrorIs(t, err, ErrBroken)
			require.False(t, ok)
			// It stays broken, whatever the guest does next.
			gin.set(offWrite, 0)
			_, _, err = r.Next(nil)
			require.ErrorIs(t, err, ErrBroken)
			require.ErrorIs(t, r.Err(), ErrBroken)
		})
	}
	t.Run("read index of the host->guest ring", func(t *testing.T) {
		_, _, w, _, gout := pair(t)
		gout.set(offRead, 0xfff8)
		_, err := w.Write(TypeDataInband, 0, 1, nil, []byte("x"))
		require.ErrorIs(t, err, ErrBroken)
		gout.set(offRead, 0)
		_, err = w.Write(TypeDataInband, 0, 1, nil, []byte("x"))
		require.ErrorIs(t, err, ErrBroken)
	})
	t.Run("host index in guest memory is not trusted", func(t *testing.T) {
		_, r, _, gin, _ := pair(t)
		_, err := gin.write(TypeDataInband, 0, 7, []byte("abc"))
		require.NoError(t, err)
		gin.set(offRead, 8) // the guest moves the host's read index
		p, ok, err := r.Next(nil)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, uint64(7), p.TransID)
	})
}

func TestNewRejectsBadPages(t *testing.T) {
	m := make(flatMem, 4*PageSize)
	_, err := NewReader(m, pfns(0, 1))
	require.Error(t, err, "a header page alone")
	_, err = NewReader(m, pfns(3, 2))
	require.Error(t, err, "page beyond RAM")
	_, err = NewWriter(m, []uint64{0, 1 << 60})
	require.Error(t, err, "PFN overflowing a GPA")
	binary.LittleEndian.PutUint32(m[offRead:], 4)
	_, err = NewReader(m, pfns(0, 2))
	require.ErrorIs(t, err, ErrBroken, "unaligned start index")
}

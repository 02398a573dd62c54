package blk

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func header(typ uint32, sector uint64) []byte {
	h := make([]byte, headerSize)
	binary.LittleEndian.PutUint32(h[0:], typ)
	binary.LittleEndian.PutUint64(h[8:], sector)
	return h
}

func rd(b []byte) Segment { return Segment{Buf: b} }
func wr(b []byte) Segment { return Segment{Buf: b, Writable: true} }

func spans(ss ...span) []byte {
	out := make([]byte, 0, len(ss)*rangeSize)
	for _, s := range ss {
		out = binary.LittleEndian.AppendUint64(out, s.sector)
		out = binary.LittleEndian.AppendUint32(out, s.sectors)
		out = binary.LittleEndian.AppendUint32(out, s.flags)
	}
	return out
}

// newImage writes an image of sectors sectors, byte i = i*7, and opens it.
func newImage(t *testing.T, sectors int, o Options) (*Disk, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	img := make([]byte, sectors*SectorSize)
	for i := range img {
		img[i] = byte(i * 7)
	}
	require.NoError(t, os.WriteFile(path, img, 0o600))
	o.Path = path
	d, err := Open(o, nil)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d, path
}

func TestReadSpansDescriptors(t *testing.T) {
	d, path := newImage(t, 8, Options{})
	img, err := os.ReadFile(path)
	require.NoError(t, err)
	a, b, st := make([]byte, 512), make([]byte, 1024), []byte{0xee}
	n := d.Process([]Segment{rd(header(TypeIn, 2)), wr(a), wr(b), wr(st)})
	require.Equal(t, uint32(1536+1), n)
	require.Equal(t, byte(StatusOK), st[0])
	require.Equal(t, img[1024:1536], a)
	require.Equal(t, img[1536:2560], b)
}

func TestStatusSharesLastDescriptor(t *testing.T) {
	// Framing is free: data and status in one descriptor, header split in two.
	d, path := newImage(t, 4, Options{})
	img, _ := os.ReadFile(path)
	h := header(TypeIn, 1)
	buf := make([]byte, 513)
	n := d.Process([]Segment{rd(h[:5]), rd(h[5:]), wr(buf)})
	require.Equal(t, uint32(513), n)
	require.Equal(t, byte(StatusOK), buf[512])
	require.Equal(t, img[512:1024], buf[:512])
}

func TestWriteThenFlush(t *testing.T) {
	d, path := newImage(t, 8, Options{})
	data := bytes.Repeat([]byte{0xab}, 1024)
	st := []byte{0xee}
	require.Equal(t, uint32(1), d.Process([]Segment{rd(header(TypeOut, 3)), rd(data[:512]), rd(data[512:]), wr(st)}))
	require.Equal(t, byte(StatusOK), st[0])
	st[0] = 0xee
	d.Process([]Segment{rd(header(TypeFlush, 0)), wr(st)})
	require.Equal(t, byte(StatusOK), st[0])
	img, _ := os.ReadFile(path)
	require.Equal(t, data, img[3*512:5*512])
	last := 3*512 - 1
	require.Equal(t, byte(last*7), img[last], "sector before untouched")
	require.Len(t, img, 8*512)
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	d, path := newImage(t, 4, Options{ReadOnly: true})
	before, _ := os.ReadFile(path)
	require.NotZero(t, d.Features()&FeatureRO)
	require.Zero(t, d.Features()&FeatureDiscard)
	for _, chain := range [][]Segment{
		{rd(header(TypeOut, 0)), rd(make([]byte, 512)), wr([]byte{0xee})},
		{rd(header(TypeDiscard, 0)), rd(spans(span{0, 1, 0})), wr([]byte{0xee})},
		{rd(header(TypeWriteZeroes, 0)), rd(spans(span{0, 1, 0})), wr([]byte{0xee})},
	} {
		d.Process(chain)
		require.Equal(t, byte(StatusIOErr), chain[len(chain)-1].Buf[0])
	}
	after, _ := os.ReadFile(path)
	require.Equal(t, before, after)
	// Reads and flushes still work.
	st := []byte{0xee}
	d.Process([]Segment{rd(header(TypeIn, 0)), wr(make([]byte, 512)), wr(st)})
	require.Equal(t, byte(StatusOK), st[0])
}

func TestNeverBeyondImage(t *testing.T) {
	d, path := newImage(t, 4, Options{})
	cases := map[string][]Segment{
		"write past end":       {rd(header(TypeOut, 3)), rd(make([]byte, 1024)), wr([]byte{0xee})},
		"write at capacity":    {rd(header(TypeOut, 4)), rd(make([]byte, 512)), wr([]byte{0xee})},
		"huge sector wraps":    {rd(header(TypeOut, 1<<63)), rd(make([]byte, 512)), wr([]byte{0xee})},
		"read past end":        {rd(header(TypeIn, 4)), wr(make([]byte, 512)), wr([]byte{0xee})},
		"unaligned length":     {rd(header(TypeOut, 0)), rd(make([]byte, 100)), wr([]byte{0xee})},
		"discard past end":     {rd(header(TypeDiscard, 0)), rd(spans(span{3, 2, 0})), wr([]byte{0xee})},
		"zeroes wraps":         {rd(header(TypeWriteZeroes, 0)), rd(spans(span{^uint64(0), 1, 0})), wr([]byte{0xee})},
		"too many ranges":      {rd(header(TypeDiscard, 0)), rd(make([]byte, (MaxSpans+1)*rangeSize)), wr([]byte{0xee})},
		"ranges partial":       {rd(header(TypeDiscard, 0)), rd(make([]byte, 10)), wr([]byte{0xee})},
		"writable data in OUT": {rd(header(TypeOut, 0)), wr(make([]byte, 512)), wr([]byte{0xee})},
		"readable data in IN":  {rd(header(TypeIn, 0)), rd(make([]byte, 512)), wr([]byte{0xee})},
		"readable after write": {rd(header(TypeIn, 0)), wr(make([]byte, 512)), rd(make([]byte, 1)), wr([]byte{0xee})},
		"short header":         {rd(make([]byte, 8)), wr([]byte{0xee})},
		"header in writable":   {wr(header(TypeIn, 0)), wr([]byte{0xee})},
		"discard with unmap":   {rd(header(TypeDiscard, 0)), rd(spans(span{0, 1, flagUnmap})), wr([]byte{0xee})},
		"unknown request type": {rd(header(99, 0)), wr([]byte{0xee})},
		"zeroes unknown flags": {rd(header(TypeWriteZeroes, 0)), rd(spans(span{0, 1, 2})), wr([]byte{0xee})},
	}
	before, _ := os.ReadFile(path)
	for name, chain := range cases {
		t.Run(name, func(t *testing.T) {
			n := d.Process(chain)
			require.Equal(t, uint32(1), n)
			st := chain[len(chain)-1].Buf[0]
			require.Contains(t, []byte{StatusIOErr, StatusUnsupp}, st)
		})
	}
	after, _ := os.ReadFile(path)
	require.Equal(t, before, after)
}

func TestNoStatusByte(t *testing.T) {
	d, _ := newImage(t, 1, Options{})
	require.Zero(t, d.Process(nil))
	require.Zero(t, d.Process([]Segment{rd(header(TypeIn, 0))}))
	require.Zero(t, d.Process([]Segment{rd(header(TypeIn, 0)), wr(nil)}))
}

func TestGetID(t *testing.T) {
	d, _ := newImage(t, 1, Options{Serial: "vmm-disk-1"})
	id := make([]byte, IDSize)
	st := []byte{0xee}
	n := d.Process([]Segment{rd(header(TypeGetID, 0)), wr(id), wr(st)})
	require.Equal(t, uint32(IDSize+1), n)
	require.Equal(t, byte(StatusOK), st[0])
	require.Equal(t, "vmm-disk-1", string(bytes.TrimRight(id, "\x00")))

	_, err := Open(Options{Path: "x", Serial: "012345678901234567890"}, nil)
	require.Error(t, err)
}

func TestDiscardAndWriteZeroes(t *testing.T) {
	d, path := newImage(t, 16, Options{})
	st := []byte{0xee}
	d.Process([]Segment{rd(header(TypeWriteZeroes, 0)), rd(spans(span{2, 2, 0}, span{8, 1, flagUnmap})), wr(st)})
	require.Equal(t, byte(StatusOK), st[0])
	st[0] = 0xee
	d.Process([]Segment{rd(header(TypeDiscard, 0)), rd(spans(span{12, 4, 0})), wr(st)})
	require.Equal(t, byte(StatusOK), st[0])

	img, _ := os.ReadFile(path)
	require.Len(t, img, 16*512, "size kept")
	zero := make([]byte, 512)
	require.Equal(t, zero, img[2*512:3*512])
	require.Equal(t, zero, img[3*512:4*512])
	require.Equal(t, zero, img[8*512:9*512])
	require.NotEqual(t, zero, img[4*512:5*512], "neighbour kept")
	require.NotEqual(t, zero, img[9*512:10*512], "neighbour kept")
}

func TestOddSizedImageTailHidden(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd.img")
	require.NoError(t, os.WriteFile(path, make([]byte, 1000), 0o600))
	d, err := Open(Options{Path: path}, nil)
	require.NoError(t, err)
	defer d.Close()
	require.Equal(t, uint64(1), d.Capacity())
	st := []byte{0xee}
	d.Process([]Segment{rd(header(TypeOut, 1)), rd(make([]byte, 512)), wr(st)})
	require.Equal(t, byte(StatusIOErr), st[0])
	fi, _ := os.Stat(path)
	require.Equal(t, int64(1000), fi.Size())
}

func TestExclusiveLock(t *testing.T) {
	_, path := newImage(t, 1, Options{})
	_, err := Open(Options{Path: path}, nil)
	require.ErrorIs(t, err, ErrBusy)
	_, err = Open(Options{Path: path, ReadOnly: true}, nil)
	require.ErrorIs(t, err, ErrBusy)
}

func TestConfig(t *testing.T) {
	d, _ := newImage(t, 8, Options{})
	c := make([]byte, 8)
	d.ReadConfig(0, c)
	require.Equal(t, uint64(8), binary.LittleEndian.Uint64(c))
	b := make([]byte, 4)
	d.ReadConfig(20, b)
	require.Equal(t, uint32(512), binary.LittleEndian.Uint32(b))
	d.ReadConfig(40, b)
	require.Equal(t, uint32(MaxSpans), binary.LittleEndian.Uint32(b))
	b = []byte{1, 2, 3, 4}
	d.ReadConfig(ConfigSize-2, b)
	require.Equal(t, []byte{0, 0, 0, 0}, b)
	d.ReadConfig(1<<63, b)
	require.Equal(t, []byte{0, 0, 0, 0}, b)
}

func TestManySegmentsOverIOVMax(t *testing.T) {
	const maxIOV = 1024 // IOV_MAX: storage/raw batches by it
	d, path := newImage(t, 1200, Options{})
	img, _ := os.ReadFile(path)
	chain := []Segment{rd(header(TypeIn, 7))}
	for range maxIOV + 76 {
		chain = append(chain, wr(make([]byte, 512)))
	}
	st := []byte{0xee}
	chain = append(chain, wr(st))
	require.Equal(t, uint32((maxIOV+76)*512+1), d.Process(chain))
	require.Equal(t, byte(StatusOK), st[0])
	var got []byte
	for _, s := range chain[1 : len(chain)-1] {
		got = append(got, s.Buf...)
	}
	require.Equal(t, img[7*512:(7+maxIOV+76)*512], got)

	// And back: write them all somewhere else.
	out := []Segment{rd(header(TypeOut, 0))}
	for _, s := range chain[1 : len(chain)-1] {
		out = append(out, rd(s.Buf))
	}
	out = append(out, wr(st))
	d.Process(out)
	require.Equal(t, byte(StatusOK), st[0])
	img2, _ := os.ReadFile(path)
	require.Equal(t, got, img2[:len(got)])
}

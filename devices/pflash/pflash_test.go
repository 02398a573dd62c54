package pflash

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// memStore is a chip's backing store in memory, recording every write.
type memStore struct {
	b      []byte
	writes int
	fail   bool
}

func (m *memStore) WriteAt(p []byte, off int64) (int, error) {
	if m.fail {
		return 0, errors.New("disk full")
	}
	m.writes++
	return copy(m.b[off:], p), nil
}

const testBlocks = 4

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

// newRW is a writable chip whose store starts as a copy of its contents.
func newRW(t *testing.T) (*Chip, *memStore) {
	t.Helper()
	data := pattern(testBlocks * BlockSize)
	st := &memStore{b: bytes.Clone(data)}
	c, err := New("vars", data, st, nil)
	require.NoError(t, err)
	return c, st
}

func rd(c *Chip, off uint64) byte {
	b := []byte{0}
	c.Read(off, b)
	return b[0]
}

func wr(c *Chip, off uint64, v ...byte) { c.Write(off, v) }

func TestNewRejectsSizes(t *testing.T) {
	for _, n := range []int{0, 100, BlockSize + 1} {
		_, err := New("x", make([]byte, n), nil, nil)
		require.ErrorIs(t, err, ErrSize, "size %d", n)
	}
}

func TestReadArray(t *testing.T) {
	c, _ := newRW(t)
	want := pattern(testBlocks * BlockSize)
	got := make([]byte, 8)
	c.Read(BlockSize+5, got)
	require.Equal(t, want[BlockSize+5:BlockSize+13], got)
	// Past the end: all ones.
	c.Read(uint64(c.Size())-2, got[:4])
	require.Equal(t, []byte{want[len(want)-2], want[len(want)-1], 0xff, 0xff}, got[:4])
	// 0xF0 and 0x00 are read array too.
	for _, cmd := range []byte{cmdReadArrayAlt, cmdReadArrayZero, cmdReadArray} {
		wr(c, 0, cmdReadStatus)
		require.Equal(t, byte(StatusReady), rd(c, 7))
		wr(c, 0, cmd)
		require.Equal(t, want[7], rd(c, 7), "cmd %#x", cmd)
	}
}

func TestReadStatusReplicated(t *testing.T) {
	c, _ := newRW(t)
	wr(c, 0x1234, cmdReadStatus)
	got := make([]byte, 4)
	c.Read(0x10, got)
	require.Equal(t, []byte{StatusReady, StatusReady, StatusReady, StatusReady}, got)
}

// TestOVMFProbe is QemuFlash.c's detection: clear status, read (the array
// byte, not 0x50), read status, read (0x00 means flash).
func TestOVMFProbe(t *testing.T) {
	c, _ := newRW(t)
	orig := rd(c, 0)
	wr(c, 0, cmdClearStatus)
	require.Equal(t, orig, rd(c, 0), "clear status returns to read array")
	wr(c, 0, cmdReadStatus)
	require.Equal(t, byte(0), rd(c, 0), "status after clear status")
	wr(c, 0, cmdReadArray)
	require.Equal(t, orig, rd(c, 0))
}

func TestProgramByte(t *testing.T) {
	c, st := newRW(t)
	wr(c, 0, cmdClearStatus)
	wr(c, 0x2345, cmdProgram)
	wr(c, 0x2345, 0x5a)
	require.Equal(t, byte(StatusReady), rd(c, 0x2345), "reads return status after a program")
	require.Equal(t, byte(0x5a), st.b[0x2345], "persisted")
	require.Equal(t, 1, st.writes)
	wr(c, 0, cmdReadArray)
	require.Equal(t, byte(0x5a), rd(c, 0x2345))
	// 0x40 programs too, and a wide access programs every byte of it.
	wr(c, 0x10, cmdProgramAlt)
	c.Write(0x10, []byte{1, 2, 3, 4})
	wr(c, 0, cmdReadArray)
	got := make([]byte, 4)
	c.Read(0x10, got)
	require.Equal(t, []byte{1, 2, 3, 4}, got)
	require.Equal(t, []byte{1, 2, 3, 4}, st.b[0x10:0x14])
	// Across a block boundary.
	wr(c, BlockSize-2, cmdProgram)
	c.Write(BlockSize-2, []byte{9, 8, 7, 6})
	require.Equal(t, []byte{9, 8, 7, 6}, st.b[BlockSize-2:BlockSize+2])
}

func TestProgramPastEnd(t *testing.T) {
	c, st := newRW(t)
	before := bytes.Clone(st.b)
	wr(c, 0, cmdClearStatus)
	end := uint64(c.Size())
	wr(c, end-2, cmdProgram)
	c.Write(end-2, []byte{1, 2, 3, 4})
	require.Equal(t, byte(StatusReady|StatusProgramError), rd(c, 0))
	require.Equal(t, before, st.b, "nothing written, the store never grows")
	require.Len(t, st.b, c.Size())
}

func TestBlockErase(t *testing.T) {
	c, st := newRW(t)
	orig := pattern(c.Size())
	wr(c, 2*BlockSize+100, cmdBlockErase)
	require.Equal(t, byte(StatusReady), rd(c, 0), "status while waiting for the confirm")
	wr(c, 2*BlockSize+100, cmdConfirm)
	require.Equal(t, byte(StatusReady), rd(c, 0))
	wr(c, 0, cmdReadArray)
	blank := bytes.Repeat([]byte{0xff}, BlockSize)
	got := make([]byte, BlockSize)
	for i := range got {
		got[i] = rd(c, uint64(2*BlockSize+i))
	}
	require.Equal(t, blank, got)
	require.Equal(t, blank, st.b[2*BlockSize:3*BlockSize])
	require.Equal(t, orig[:2*BlockSize], st.b[:2*BlockSize], "blocks below untouched")
	require.Equal(t, orig[3*BlockSize:], st.b[3*BlockSize:], "blocks above untouched")
	// Program after erase within the block.
	wr(c, 2*BlockSize, cmdProgram)
	wr(c, 2*BlockSize, 0x42)
	require.Equal(t, byte(0x42), st.b[2*BlockSize])
}

func TestEraseBadConfirm(t *testing.T) {
	c, st := newRW(t)
	before := bytes.Clone(st.b)
	wr(c, 0, cmdClearStatus)
	wr(c, 0, cmdBlockErase)
	wr(c, 0, 0x33)
	require.Equal(t, before, st.b, "no erase without the confirm")
	require.Equal(t, before[0], rd(c, 0), "back in read array")
	wr(c, 0, cmdReadStatus)
	require.Equal(t, byte(StatusReady|StatusProgramError|StatusEraseError), rd(c, 0))
	wr(c, 0, cmdClearStatus)
	wr(c, 0, cmdReadStatus)
	require.Equal(t, byte(0), rd(c, 0), "clear status clears the errors")
	// 0xFF instead of the confirm aborts quietly.
	wr(c, 0, cmdBlockErase)
	wr(c, 0, cmdReadArray)
	require.Equal(t, before, st.b)
	wr(c, 0, cmdReadStatus)
	require.Equal(t, byte(0), rd(c, 0))
}

func TestReadOnlyChip(t *testing.T) {
	data := pattern(2 * BlockSize)
	c, err := New("code", data, nil, nil)
	require.NoError(t, err)
	require.True(t, c.ReadOnly())
	wr(c, 5, cmdProgram)
	wr(c, 5, 0)
	require.Equal(t, byte(StatusReady|StatusProgramError), rd(c, 5))
	wr(c, 0, cmdClearStatus)
	wr(c, 5, cmdBlockErase)
	wr(c, 5, cmdConfirm)
	require.Equal(t, byte(StatusReady|StatusEraseError), rd(c, 5))
	wr(c, 0, cmdClearStatus)
	wr(c, 0, cmdBufferedWrite)
	wr(c, 0, 0)
	wr(c, 0, 0)
	wr(c, 0, cmdConfirm)
	require.Equal(t, byte(StatusReady|StatusProgramError), rd(c, 0))
	wr(c, 0, cmdReadArray)
	require.Equal(t, pattern(2*BlockSize), c.Data(), "contents unchanged")
}

func TestStoreFailureChangesNothing(t *testing.T) {
	c, st := newRW(t)
	st.fail = true
	orig := pattern(c.Size())
	wr(c, 0, cmdClearStatus)
	wr(c, 3, cmdProgram)
	wr(c, 3, 0)
	require.Equal(t, byte(StatusReady|StatusProgramError), rd(c, 3))
	wr(c, 0, cmdClearStatus)
	wr(c, 3, cmdBlockErase)
	wr(c, 3, cmdConfirm)
	require.Equal(t, byte(StatusReady|StatusEraseError), rd(c, 3))
	require.Equal(t, orig, c.Data())
}

func TestBufferedWrite(t *testing.T) {
	c, st := newRW(t)
	wr(c, 0, cmdClearStatus)
	wr(c, 0x100, cmdBufferedWrite)
	require.Equal(t, byte(StatusReady), rd(c, 0x100), "buffer available")
	wr(c, 0x100, 5) // 6 bytes
	c.Write(0x100, []byte{1, 2, 3, 4})
	c.Write(0x104, []byte{5, 6})
	require.Equal(t, pattern(c.Size())[0x100:0x106], st.b[0x100:0x106], "nothing before the confirm")
	wr(c, 0x100, cmdConfirm)
	require.Equal(t, []byte{1, 2, 3, 4, 5, 6}, st.b[0x100:0x106])
	require.Equal(t, byte(StatusReady), rd(c, 0))
	// Too long, or data leaving the block: sequence error, nothing written.
	before := bytes.Clone(st.b)
	wr(c, 0, cmdBufferedWrite)
	wr(c, 0, maxBufferedWrite)
	wr(c, 0, cmdReadStatus)
	require.Equal(t, byte(StatusReady|StatusProgramError|StatusEraseError), rd(c, 0))
	wr(c, 0, cmdClearStatus)
	wr(c, BlockSize-1, cmdBufferedWrite)
	wr(c, BlockSize-1, 1)
	wr(c, BlockSize-1, 1)
	wr(c, BlockSize, 2)
	require.Equal(t, before, st.b)
	// A wide access starting in the block and ending in the next.
	wr(c, 0, cmdClearStatus)
	wr(c, BlockSize-2, cmdBufferedWrite)
	wr(c, BlockSize-2, 3)
	c.Write(BlockSize-2, []byte{9, 9, 9, 9})
	wr(c, BlockSize-2, cmdConfirm)
	require.Equal(t, before, st.b)
	wr(c, 0, cmdReadStatus)
	require.Equal(t, byte(StatusReady|StatusProgramError|StatusEraseError), rd(c, 0))
	wr(c, 0, cmdClearStatus)
	// A missing confirm aborts.
	wr(c, 0, cmdBufferedWrite)
	wr(c, 0, 0)
	wr(c, 0, 0x77)
	wr(c, 0, cmdReadArray)
	require.Equal(t, before, st.b)
}

func TestLockCommandsAccepted(t *testing.T) {
	c, st := newRW(t)
	before := bytes.Clone(st.b)
	for _, second := range []byte{lockBlock, cmdConfirm, lockDown} {
		wr(c, 0, cmdClearStatus)
		wr(c, BlockSize, cmdLockSetup)
		wr(c, BlockSize, second)
		require.Equal(t, byte(StatusReady), rd(c, 0), "second byte %#x", second)
	}
	wr(c, 0, cmdLockSetup)
	wr(c, 0, 0x42)
	wr(c, 0, cmdReadStatus)
	require.Equal(t, byte(StatusReady|StatusProgramError|StatusEraseError), rd(c, 0))
	require.Equal(t, before, st.b)
	// Unlocked blocks still program.
	wr(c, 0, cmdProgram)
	wr(c, 0, 0x11)
	require.Equal(t, byte(0x11), st.b[0])
}

func TestReadID(t *testing.T) {
	c, _ := newRW(t)
	wr(c, 0, cmdReadID)
	require.Equal(t, byte(0), rd(c, 0), "manufacturer")
	require.Equal(t, byte(0), rd(c, 1), "device")
	wr(c, 0, cmdReadArray)
	require.Equal(t, pattern(1)[0], rd(c, 0))
}

func TestCFIQuery(t *testing.T) {
	c, _ := newRW(t)
	wr(c, 0x55, cmdCFIQuery)
	q := func(off uint64) byte { return rd(c, off) }
	require.Equal(t, "QRY", string([]byte{q(0x10), q(0x11), q(0x12)}))
	require.Equal(t, byte(1), q(0x13), "command set 0x0001")
	require.Equal(t, byte(0), q(0x14))
	require.Equal(t, byte(14), q(0x27), "log2 of 16 KiB")
	require.Equal(t, byte(1), q(0x2c), "one erase region")
	require.Equal(t, byte(testBlocks-1), q(0x2d))
	require.Equal(t, byte(0), q(0x2e))
	require.Equal(t, byte(BlockSize/256), q(0x2f))
	require.Equal(t, "PRI", string([]byte{q(0x31), q(0x32), q(0x33)}))
	wide := make([]byte, 2)
	c.Read(0x10, wide)
	require.Equal(t, []byte{'Q', 'Q'}, wide, "replicated")
	wr(c, 0, cmdReadArray)
	require.Equal(t, pattern(0x11)[0x10], rd(c, 0x10))
}

func TestUnknownCommandReadsArray(t *testing.T) {
	c, st := newRW(t)
	before := bytes.Clone(st.b)
	wr(c, 0, cmdReadStatus)
	wr(c, 0, 0x12)
	require.Equal(t, before[0], rd(c, 0))
	require.Equal(t, before, st.b)
}

func TestModeHook(t *testing.T) {
	c, _ := newRW(t)
	var events []bool
	c.SetModeHook(func(readArray bool) { events = append(events, readArray) })
	wr(c, 0, cmdReadArray) // already in read array: no event
	wr(c, 0, cmdProgram)
	wr(c, 0, 1)
	wr(c, 0, cmdReadStatus) // still out of read array
	wr(c, 0, cmdReadArray)
	wr(c, 0, cmdClearStatus) // stays in read array
	wr(c, 0, cmdCFIQuery)
	wr(c, 0, cmdReadArray)
	require.Equal(t, []bool{false, true, false, true}, events)
}

func TestFileStoreDurableInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vars.fd")
	require.NoError(t, os.WriteFile(path, pattern(2*BlockSize), 0o600))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	data := pattern(2 * BlockSize)
	c, err := New("vars", data, NewFileStore(f), nil)
	require.NoError(t, err)
	wr(c, BlockSize, cmdBlockErase)
	wr(c, BlockSize, cmdConfirm)
	wr(c, 7, cmdProgram)
	wr(c, 7, 0xab)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	want := pattern(2 * BlockSize)
	want[7] = 0xab
	copy(want[BlockSize:], bytes.Repeat([]byte{0xff}, BlockSize))
	require.Equal(t, want, got)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.EqualValues(t, 2*BlockSize, fi.Size())
}

package testdev

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

type fakeSynIC struct{ calls []string }

func (f *fakeSynIC) note(format string, a ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
}
func (f *fakeSynIC) CreateSINTRoute(vp, sint int) error {
	f.note("route+ %d %d", vp, sint)
	return nil
}
func (f *fakeSynIC) DestroySINTRoute(vp, sint int) { f.note("route- %d %d", vp, sint) }
func (f *fakeSynIC) SetSINT(vp, sint int)          { f.note("set %d %d", vp, sint) }
func (f *fakeSynIC) CreateMessageConnection(vp, sint int, conn uint32) error {
	f.note("msg+ %d %d %d", vp, sint, conn)
	return nil
}
func (f *fakeSynIC) DestroyMessageConnection(conn uint32) { f.note("msg- %d", conn) }
func (f *fakeSynIC) CreateEventConnection(vp, sint int, conn uint32) error {
	f.note("evt+ %d %d %d", vp, sint, conn)
	return fmt.Errorf("refused")
}
func (f *fakeSynIC) DestroyEventConnection(conn uint32) { f.note("evt- %d", conn) }

func TestHyperVTestdev(t *testing.T) {
	s := &fakeSynIC{}
	d := NewHyperV(s, nil)
	w := func(sint, vp, cmd, conn uint32) {
		d.Write(0, binary.LittleEndian.AppendUint32(nil, sint|vp<<8|cmd<<16|conn<<24))
	}
	w(2, 1, 1, 0)
	w(2, 1, 3, 0)
	w(2, 1, 2, 0)
	w(3, 0, 4, 9)
	w(0, 0, 5, 9)
	w(5, 1, 6, 200)
	w(0, 0, 7, 200)
	w(0, 0, 99, 0)              // unknown: ignored
	d.Write(0, []byte{1, 1, 1}) // not 32-bit: ignored
	require.Equal(t, []string{"route+ 1 2", "set 1 2", "route- 1 2", "msg+ 0 3 9", "msg- 9", "evt+ 1 5 200", "evt- 200"}, s.calls)
	b := []byte{0xff, 0xff, 0xff, 0xff}
	d.Read(0, b)
	require.Equal(t, make([]byte, 4), b)
}

package linkwatch

import (
	"encoding/binary"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/internal/taptest"
	"github.com/vmmdev/vmm/internal/testenv"
)

// linkMsg builds one netlink message about an interface.
func linkMsg(typ uint16, index int32, flags uint32, pad int) []byte {
	b := make([]byte, unix.SizeofNlMsghdr+unix.SizeofIfInfomsg+pad)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint32(b[20:], uint32(index))
	ne.PutUint32(b[24:], flags)
	return b
}

func TestLinkState(t *testing.T) {
	upFlags := uint32(unix.IFF_UP | unix.IFF_LOWER_UP | unix.IFF_RUNNING)
	for _, tc := range []struct {
		name   string
		buf    []byte
		up, ok bool
	}{
		{"up", linkMsg(unix.RTM_NEWLINK, 7, upFlags, 0), true, true},
		{"admin down", linkMsg(unix.RTM_NEWLINK, 7, unix.IFF_LOWER_UP, 0), false, true},
		{"no carrier", linkMsg(unix.RTM_NEWLINK, 7, unix.IFF_UP, 0), false, true},
		{"deleted", linkMsg(unix.RTM_DELLINK, 7, upFlags, 0), false, true},
		{"other interface", linkMsg(unix.RTM_NEWLINK, 8, upFlags, 0), false, false},
		{"other type", linkMsg(unix.RTM_NEWADDR, 7, upFlags, 0), false, false},
		// Several messages: the last about the interface wins; padding
		// between them is skipped.
		{"last wins", append(append(linkMsg(unix.RTM_NEWLINK, 7, upFlags, 2), 0, 0),
			append(linkMsg(unix.RTM_NEWLINK, 7, unix.IFF_UP, 0), linkMsg(unix.RTM_NEWLINK, 9, upFlags, 0)...)...), false, true},
		{"short body", linkMsg(unix.RTM_NEWLINK, 7, upFlags, 0)[:unix.SizeofNlMsghdr+8], false, false},
		{"length past the buffer", func() []byte {
			b := linkMsg(unix.RTM_NEWLINK, 7, upFlags, 0)
			binary.NativeEndian.PutUint32(b, 1000)
			return b
		}(), false, false},
		{"empty", nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, ok := LinkState(tc.buf, 7)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.up, up)
		})
	}
}

func FuzzLinkState(f *testing.F) {
	f.Add(linkMsg(unix.RTM_NEWLINK, 7, unix.IFF_UP|unix.IFF_LOWER_UP, 0))
	f.Add(append(linkMsg(unix.RTM_DELLINK, 7, 0, 1), linkMsg(unix.RTM_NEWLINK, 7, unix.IFF_UP, 3)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		up, ok := LinkState(b, 7)
		if up && !ok {
			t.Fatal("up without a message")
		}
	})
}

// TestWatchTap follows a real tap through `ip link set` down and up (it
// needs CAP_NET_ADMIN and iproute2). The test's own fd is the tap's
// queue, which gives it carrier: IFF_UP alone then decides.
func TestWatchTap(t *testing.T) {
	const name = "vmmlw0"
	if _, err := exec.LookPath("ip"); err != nil {
		testenv.Skip(t, "iproute2's ip not installed")
	}
	taptest.Open(t, name)
	states := make(chan bool, 16)
	w, err := Watch(name, func(up bool) { states <- up }, nil)
	require.NoError(t, err)
	defer w.Close()
	next := func() bool {
		select {
		case s := <-states:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("no link state reported within 10 s")
			return false
		}
	}
	require.False(t, next(), "a new tap is down")
	ip := func(args ...string) {
		out, err := exec.Command("ip", append([]string{"link", "set", "dev", name}, args...)...).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	ip("up")
	require.True(t, next(), "IFF_UP with a queue attached")
	ip("down")
	require.False(t, next())
	ip("up")
	require.True(t, next())
	require.NoError(t, w.Close())
	ip("down")
	select {
	case s := <-states:
		t.Fatalf("state %v reported after Close", s)
	default:
	}
}

// Package taptest makes the tap interfaces that tests of tap-facing code
// attach to.
package taptest

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/internal/testenv"
)

// Open creates tap name (IFF_TAP, no packet information) with one queue
// held open, which gives it carrier, until t ends (and the tap with it). Without /dev/net/tun or CAP_NET_ADMIN it skips
// (fails under CI=true).
func Open(t *testing.T, name string) {
	t.Helper()
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		testenv.Skip(t, "no /dev/net/tun: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	ifr, err := unix.NewIfreq(name)
	require.NoError(t, err)
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); errors.Is(err, unix.EPERM) {
		testenv.Skip(t, "creating a tap needs CAP_NET_ADMIN: %v", err)
	} else {
		require.NoError(t, err)
	}
}

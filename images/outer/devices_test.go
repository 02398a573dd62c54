package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/pattern"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/internal/taptest"
	"github.com/vmmdev/vmm/storage/qcow2"
	"github.com/vmmdev/vmm/vmm/linkwatch"
)

func TestDiskImageRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.img")
	d := scenario.Disk{Path: p, Size: 3 << 20, Seed: 1, WantSeed: 2}
	require.NoError(t, writeImage(d))
	err := verifyImage(d)
	require.ErrorContains(t, err, "byte 0 differs", "still the first pattern")

	// What the guest does: overwrite with the second pattern.
	b := make([]byte, d.Size)
	pattern.Fill(b, 2, 0)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	require.NoError(t, verifyImage(d))

	b[2<<20+5] ^= 0x40
	require.NoError(t, os.WriteFile(p, b, 0o600))
	require.ErrorContains(t, verifyImage(d), "byte 2097157 differs")

	require.NoError(t, os.WriteFile(p, b[:1024], 0o600))
	require.ErrorContains(t, verifyImage(d), "1024 bytes")
}

// TestQcow2ImageRoundTrip: a qcow2 disk holds the pattern in its virtual
// disk; a guest's rewrite through a qcow2 writer is what verifyImage reads.
func TestQcow2ImageRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.qcow2")
	d := scenario.Disk{Path: p, Size: 3 << 20, Seed: 1, WantSeed: 2, Format: "qcow2"}
	require.NoError(t, writeImage(d))
	head := make([]byte, 4)
	f, err := os.Open(p)
	require.NoError(t, err)
	_, err = f.ReadAt(head, 0)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, "QFI\xfb", string(head))
	require.ErrorContains(t, verifyImage(d), "byte 0 differs", "still the first pattern")

	img, err := qcow2.Open(p, false)
	require.NoError(t, err)
	b := make([]byte, d.Size)
	pattern.Fill(b, 2, 0)
	_, err = img.WriteAt(b, 0)
	require.NoError(t, err)
	require.NoError(t, img.Close())
	require.NoError(t, verifyImage(d))
}

// TestSetupDevicesUnchanged: a disk marked Unchanged must keep its bytes,
// not only its pattern.
func TestSetupDevicesUnchanged(t *testing.T) {
	p := filepath.Join(t.TempDir(), "base.qcow2")
	s := scenario.Scenario{Disks: []scenario.Disk{{Path: p, Size: 1 << 20, Seed: 5, WantSeed: 5, Format: "qcow2", Unchanged: true}}}
	finish, err := setupDevices(s)
	require.NoError(t, err)
	require.Empty(t, finish())

	finish, err = setupDevices(s)
	require.NoError(t, err)
	// Same virtual disk, different file.
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	require.NoError(t, err)
	fi, err := f.Stat()
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{1}, fi.Size()+4096) // past every cluster: data no table points at
	require.NoError(t, err)
	require.NoError(t, f.Close())
	problems := finish()
	require.Len(t, problems, 1)
	require.Contains(t, problems[0], "its file changed during the run")
}

func TestISOImageRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cd.iso")
	d := scenario.Disk{Path: p, Size: 100 << 10, Seed: 8, WantSeed: 8, ISOFile: "data.bin"}
	require.NoError(t, writeImage(d))
	require.NoError(t, verifyImage(d))
	img, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "CD001", string(img[16*2048+1:16*2048+6]), "primary volume descriptor")
	require.Zero(t, len(img)%2048)

	// A changed byte of the file's extent is found.
	want := make([]byte, d.Size)
	pattern.Fill(want, d.Seed, 0)
	at := bytes.Index(img, want[:4096])
	require.Positive(t, at)
	img[at+5000] ^= 1
	require.NoError(t, os.WriteFile(p, img, 0o600))
	require.ErrorContains(t, verifyImage(d), "byte 5000 differs")
}

func TestSetupDevicesFiles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "seed", "user-data")
	k := filepath.Join(filepath.Dir(p), "k.elf")
	blob := []byte{0x7f, 'E', 'L', 'F', 0xff, 0x00}
	s := scenario.Scenario{Files: map[string]string{p: "#cloud-config\n"}, Blobs: map[string][]byte{k: blob}}
	finish, err := setupDevices(s)
	require.NoError(t, err)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "#cloud-config\n", string(b))
	b, err = os.ReadFile(k)
	require.NoError(t, err)
	require.Equal(t, blob, b)
	require.Empty(t, finish())
	for _, f := range []string{p, k} {
		_, err = os.Stat(f)
		require.ErrorIs(t, err, os.ErrNotExist, "file removed after the run")
	}
}

func TestSetupDevicesDisks(t *testing.T) {
	dir := t.TempDir()
	s := scenario.Scenario{Disks: []scenario.Disk{{Path: filepath.Join(dir, "a"), Size: 4096, Seed: 5, WantSeed: 5}}}
	finish, err := setupDevices(s)
	require.NoError(t, err)
	require.Empty(t, finish())
	_, err = os.Stat(s.Disks[0].Path)
	require.ErrorIs(t, err, os.ErrNotExist, "image removed after the check")
}

func request(t *testing.T, c net.Conn, kind byte, n int64) {
	t.Helper()
	var hdr [9]byte
	hdr[0] = kind
	binary.BigEndian.PutUint64(hdr[1:], uint64(n))
	_, err := c.Write(hdr[:])
	require.NoError(t, err)
}

func TestPeer(t *testing.T) {
	p, err := startPeer(netip.MustParseAddrPort("127.0.0.1:0"), "")
	require.NoError(t, err)
	defer p.stop()
	addr := p.ln.Addr().String()

	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	request(t, c, 'D', 1<<20)
	chk := pattern.NewChecker(scenario.DownloadSeed)
	_, err = io.Copy(chk, c)
	require.NoError(t, err)
	n, bad := chk.Result()
	require.Equal(t, int64(1<<20), n)
	require.Equal(t, int64(-1), bad)
	c.Close()

	// Uploads, plain and timed (the peer says ready first): the peer judges the bytes.
	for _, kind := range []byte{'U', 'T'} {
		for _, seed := range []uint64{scenario.UploadSeed, 99} {
			c, err = net.Dial("tcp", addr)
			require.NoError(t, err)
			request(t, c, kind, 300000)
			if kind == 'T' {
				ready := make([]byte, len(scenario.PeerReady))
				_, err = io.ReadFull(c, ready)
				require.NoError(t, err)
				require.Equal(t, scenario.PeerReady, string(ready))
			}
			_, err = io.Copy(c, pattern.NewReader(seed, 300000))
			require.NoError(t, err)
			reply, err := io.ReadAll(c)
			require.NoError(t, err)
			want := scenario.PeerOK
			if seed != scenario.UploadSeed {
				want = scenario.PeerBad
			}
			require.Equal(t, want, string(reply), "request %c", kind)
			c.Close()
		}
	}

	// A timed download: ready, then the bytes once the agent says go.
	c, err = net.Dial("tcp", addr)
	require.NoError(t, err)
	request(t, c, 'R', 300000)
	ready := make([]byte, len(scenario.PeerReady))
	_, err = io.ReadFull(c, ready)
	require.NoError(t, err)
	require.Equal(t, scenario.PeerReady, string(ready))
	_, err = c.Write([]byte{'G'})
	require.NoError(t, err)
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Len(t, got, 300000)
	require.Equal(t, int64(-1), pattern.Mismatch(got, scenario.DownloadSeed, 0))
	c.Close()

	// A timed upload larger than the peer will hold is refused unanswered.
	c, err = net.Dial("tcp", addr)
	require.NoError(t, err)
	request(t, c, 'T', scenario.MaxTimed+1)
	reply, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Empty(t, reply)
	c.Close()

	c, err = net.Dial("tcp", addr)
	require.NoError(t, err)
	request(t, c, 'X', 1)
	_, _ = io.ReadAll(c)
	c.Close()
	p.stop()
	require.Len(t, p.problems(), 2)
	require.Contains(t, p.problems()[0], "timed upload of")
	require.Contains(t, p.problems()[1], "unknown request")
}

// TestPeerLinkFlap: an 'L' request is answered, then the tap goes down for
// the hold and up again, as rtnetlink reports; a hold out of range is
// refused.
func TestPeerLinkFlap(t *testing.T) {
	const tap = "vmmflap0"
	taptest.Open(t, tap)
	require.NoError(t, setLinkUp(tap, true))
	states := make(chan bool, 16)
	w, err := linkwatch.Watch(tap, func(up bool) { states <- up }, nil)
	require.NoError(t, err)
	defer w.Close()
	require.True(t, <-states)

	p, err := startPeer(netip.MustParseAddrPort("127.0.0.1:0"), tap)
	require.NoError(t, err)
	defer p.stop()
	for _, hold := range []int64{100, 0, 10_001} {
		c, err := net.Dial("tcp", p.ln.Addr().String())
		require.NoError(t, err)
		request(t, c, 'L', hold)
		reply, err := io.ReadAll(c)
		require.NoError(t, err)
		c.Close()
		if hold != 100 {
			require.Empty(t, reply)
			continue
		}
		require.Equal(t, scenario.PeerOK, string(reply))
		require.False(t, <-states, "down")
		require.True(t, <-states, "up again")
	}
	p.stop()
	require.Len(t, p.problems(), 2, "%q", p.problems())
}

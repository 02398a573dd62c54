package cloudinit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/stretchr/testify/require"
)

// readSeed reads every file of a seed back with go-diskfs' ISO reader and
// returns them with the volume label.
func readSeed(t *testing.T, seed *os.File) (string, map[string]string) {
	t.Helper()
	// Through /proc/self/fd, as vmm opens the seed.
	f, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", seed.Fd()))
	require.NoError(t, err)
	defer f.Close()
	fi, err := f.Stat()
	require.NoError(t, err)
	fsys, err := iso9660.Read(file.New(f, true), fi.Size(), 0, 2048)
	require.NoError(t, err)
	entries, err := fsys.ReadDir(".")
	require.NoError(t, err)
	got := map[string]string{}
	for _, e := range entries {
		r, err := fsys.OpenFile("/"+e.Name(), os.O_RDONLY)
		require.NoError(t, err)
		b, err := io.ReadAll(r)
		require.NoError(t, err)
		got[e.Name()] = string(b)
	}
	var id [32]byte
	_, err = f.ReadAt(id[:], pvdVolumeID)
	require.NoError(t, err)
	require.Equal(t, fsys.Label(), string(id[:]), "the volume identifier, padded with spaces")
	return strings.TrimRight(fsys.Label(), " "), got
}

func writeDir(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for name, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644))
	}
	return dir
}

func TestBuild(t *testing.T) {
	user := "#cloud-config\nruncmd: [echo hi]\n"
	cases := []struct {
		name  string
		files map[string]string
		meta  string
	}{
		{"user-data only", map[string]string{"user-data": user}, "instance-id: iid-test\n"},
		{"meta-data without id", map[string]string{"user-data": user, "meta-data": "local-hostname: ci\n"},
			"instance-id: iid-test\nlocal-hostname: ci\n"},
		{"meta-data with id", map[string]string{"user-data": user, "meta-data": "instance-id: mine\n"}, "instance-id: mine\n"},
		{"json meta-data", map[string]string{"user-data": user, "meta-data": `{"local-hostname": "ci"}`},
			`{"instance-id": "iid-test", "local-hostname": "ci"}`},
		{"all files", map[string]string{"user-data": user, "meta-data": "instance-id: x\n",
			"network-config": "version: 2\n", "vendor-data": "#cloud-config\n"}, "instance-id: x\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeDir(t, c.files)
			f, err := BuildTemp(dir, t.TempDir(), "iid-test")
			require.NoError(t, err)
			defer f.Close()
			label, got := readSeed(t, f)
			require.Equal(t, Label, label)
			want := map[string]string{"meta-data": c.meta}
			for k, v := range c.files {
				if k != "meta-data" {
					want[k] = v
				}
			}
			require.Equal(t, want, got)
		})
	}
}

// TestBuildTempLeavesNothing: the seed file has no name from the moment it
// is built, and the staging directory is gone.
func TestBuildTempLeavesNothing(t *testing.T) {
	dir := writeDir(t, map[string]string{"user-data": "#cloud-config\n"})
	tmp := t.TempDir()
	f, err := BuildTemp(dir, tmp, NewInstanceID())
	require.NoError(t, err)
	defer f.Close()
	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, left)
}

func TestBadDirs(t *testing.T) {
	noUser := writeDir(t, map[string]string{"meta-data": "instance-id: x\n"})
	require.ErrorIs(t, Check(noUser), ErrNoUserData)
	userDir := writeDir(t, nil)
	require.NoError(t, os.Mkdir(filepath.Join(userDir, "user-data"), 0o755))
	require.ErrorContains(t, Check(userDir), "not a regular file")
	require.True(t, errors.Is(Check(filepath.Join(userDir, "nope")), os.ErrNotExist))
	f := filepath.Join(userDir, "plain")
	require.NoError(t, os.WriteFile(f, nil, 0o644))
	require.ErrorContains(t, Check(f), "not a directory")
	big := writeDir(t, map[string]string{"user-data": ""})
	require.NoError(t, os.Truncate(filepath.Join(big, "user-data"), maxFile+1))
	require.ErrorContains(t, Check(big), "larger than")
}

func TestNewInstanceIDDiffers(t *testing.T) {
	require.NotEqual(t, NewInstanceID(), NewInstanceID())
}

// FuzzWithInstanceID: any meta-data comes back naming an instance-id, with
// its own bytes kept in order.
func FuzzWithInstanceID(f *testing.F) {
	for _, s := range []string{"", "local-hostname: a\n", "instance-id: x\n", "{}", ` {"a": 1}`, "{", "\n{\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, meta []byte) {
		out := withInstanceID(meta, "iid-fuzz")
		if !bytes.Contains(out, []byte("instance-id")) {
			t.Fatalf("no instance-id in %q", out)
		}
		// The input survives as a subsequence (only an insertion is made).
		i := 0
		for _, c := range out {
			if i < len(meta) && c == meta[i] {
				i++
			}
		}
		if i != len(meta) {
			t.Fatalf("%q lost bytes of %q", out, meta)
		}
	})
}

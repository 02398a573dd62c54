package vmm

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/storage/block"
)

// TestAttachCloudInit: the seed becomes the last virtio-blk disk, read-only
// and raw, labelled cidata, without touching the caller's disk list, and it
// has no name in the temporary directory.
func TestAttachCloudInit(t *testing.T) {
	seed := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(seed, "user-data"), []byte("#cloud-config\n"), 0o644))
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	disks := make([]Disk, 1, 4)
	disks[0] = Disk{Path: "boot.img"}
	m := &Machine{cfg: Config{Disks: disks, CloudInit: seed}, log: slog.New(slog.DiscardHandler)}
	require.NoError(t, m.attachCloudInit())
	defer m.seed.Close()
	require.Len(t, m.cfg.Disks, 2)
	require.Equal(t, Disk{Path: "boot.img"}, m.cfg.Disks[0])
	d := m.cfg.Disks[1]
	require.Equal(t, Disk{Path: d.Path, ReadOnly: true, Format: block.FormatRaw, Serial: "cidata"}, d)
	require.Empty(t, disks[:2][1].Path, "the caller's backing array is untouched")

	dev, err := block.Open(block.Options{Path: d.Path, ReadOnly: true, Format: d.Format}, nil)
	require.NoError(t, err)
	defer dev.Close()
	label := make([]byte, 32)
	require.NoError(t, dev.ReadV([][]byte{label}, 16*2048+40))
	require.Equal(t, "cidata", string(label[:6]))
	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, left)
}

package grubdisk

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/testenv"
)

// TestBuildEFIApp reads the application back from the removable-media
// path with mtools, an independent FAT reader.
func TestBuildEFIApp(t *testing.T) {
	mcopy, err := exec.LookPath("mcopy")
	if err != nil {
		testenv.Skip(t, "mcopy (mtools) not installed")
	}
	dir := t.TempDir()
	app := filepath.Join(dir, "app.efi")
	want := append([]byte("MZ"), make([]byte, 300000)...)
	for i := range want[2:] {
		want[2+i] = byte(i * 7)
	}
	require.NoError(t, os.WriteFile(app, want, 0o644))
	disk := filepath.Join(dir, "esp.img")
	require.NoError(t, BuildEFIApp(app, disk))
	out, err := exec.Command(mcopy, "-n", "-i", disk+"@@"+strconv.Itoa(PartitionStart*SectorSize), "::"+EFIBootPath, "-").Output()
	require.NoError(t, err)
	require.Equal(t, want, out)
	require.Error(t, BuildEFIApp(filepath.Join(dir, "missing.efi"), disk))
}

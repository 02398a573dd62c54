package debdisk

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/images/grubdisk"
)

func TestGrubConfig(t *testing.T) {
	cfg, err := GrubConfig("/boot/vmlinuz-6.1.0-50-amd64", "/boot/initrd.img-6.1.0-50-amd64")
	require.NoError(t, err)
	require.Equal(t, "set timeout=0\nset default=0\necho '"+grubdisk.MenuMarker+"'\n"+
		"menuentry 'Debian GNU/Linux' {\n\techo '"+grubdisk.LinuxMarker+"'\n"+
		"\tlinux /boot/vmlinuz-6.1.0-50-amd64 root=UUID="+RootUUID+" ro console=ttyS0\n"+
		"\tinitrd /boot/initrd.img-6.1.0-50-amd64\n}\n", string(cfg))
	for _, bad := range []string{"boot/vmlinuz", "/boot/a b", "/boot/a'b", "/boot/a\nb", ""} {
		_, err := GrubConfig(bad, "/boot/initrd.img")
		require.Error(t, err, "%q", bad)
		_, err = GrubConfig("/boot/vmlinuz", bad)
		require.Error(t, err, "%q", bad)
	}
}

// TestLayout pins the partition starts the test image's boot path relies
// on: core.img's partition 1 MiB in, the ESP after it, a FAT32 size
// go-diskfs v1.9.4 lays out correctly, and the root MiB-aligned after it.
func TestLayout(t *testing.T) {
	require.Equal(t, 2048, BIOSBootStart)
	require.Equal(t, BIOSBootStart+2048, ESPStart)
	require.NotContains(t, []int{0, 129}, (espSectors-32)%130)
	require.GreaterOrEqual(t, espSectors, 65525+32+2*512, "FAT32 needs 65525 clusters")
	require.Zero(t, RootStart%2048)
	require.GreaterOrEqual(t, RootStart, ESPStart+espSectors)
	require.Equal(t, "root=UUID="+RootUUID+" ro console=ttyS0", Cmdline())
	require.Equal(t, "UUID="+RootUUID+" / ext4 errors=remount-ro 0 1\n", Fstab())
}

func TestBuildRejectsBadSize(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int64{0, 64 << 20, 200<<20 + 512} {
		out := filepath.Join(dir, "disk.raw")
		err := Build(context.Background(), Spec{Root: dir, Kernel: "/k", Initrd: "/i", Size: size}, out)
		require.Error(t, err, "size %d", size)
		_, err = os.Stat(out)
		require.ErrorIs(t, err, os.ErrNotExist, "nothing written for size %d", size)
	}
}

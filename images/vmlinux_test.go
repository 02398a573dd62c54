package images

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/testenv"
)

// fakeBzImage is a bzImage setup header (protocol 2.15, setup_sects
// sects) followed by payload at payload_offset 0x100.
func fakeBzImage(sects byte, payload []byte) []byte {
	n := 4
	if sects != 0 {
		n = int(sects)
	}
	bz := make([]byte, (n+1)*512+0x100)
	bz[0x1f1] = sects
	copy(bz[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(bz[0x206:], 0x20f)
	binary.LittleEndian.PutUint32(bz[0x248:], 0x100)
	binary.LittleEndian.PutUint32(bz[0x24c:], uint32(len(payload)))
	return append(bz, payload...)
}

func TestBzImagePayload(t *testing.T) {
	xz := append([]byte{0xfd, '7', 'z', 'X', 'Z', 0}, "stream"...)
	for _, sects := range []byte{0, 4, 27} {
		got, err := BzImagePayload(append(fakeBzImage(sects, xz), "trailer"...))
		require.NoError(t, err, "setup_sects %d", sects)
		require.Equal(t, xz, got)
	}
	old := fakeBzImage(4, xz)
	binary.LittleEndian.PutUint16(old[0x206:], 0x207)
	long := fakeBzImage(4, xz)
	binary.LittleEndian.PutUint32(long[0x24c:], 1<<31)
	for name, bz := range map[string][]byte{
		"empty":        nil,
		"no header":    make([]byte, 4096),
		"protocol":     old,
		"beyond":       long,
		"truncated":    fakeBzImage(4, xz)[:5*512+0x100+3],
		"gzip payload": fakeBzImage(4, []byte{0x1f, 0x8b, 8, 0}),
	} {
		_, err := BzImagePayload(bz)
		require.ErrorIs(t, err, ErrNoPayload, name)
	}
}

// Vmlinux unpacks the XZ payload (an ELF here: /bin/true, compressed by the
// xz tool as Kbuild does) and rejects a payload that is no ELF.
func TestVmlinux(t *testing.T) {
	if _, err := exec.LookPath("xz"); err != nil {
		testenv.Skip(t, "xz not installed (make setup installs xz-utils)")
	}
	elfFile, err := exec.LookPath("true")
	require.NoError(t, err)
	want, err := os.ReadFile(elfFile)
	require.NoError(t, err)
	dir := t.TempDir()
	xz := func(data []byte) []byte {
		in := filepath.Join(t.TempDir(), "in")
		require.NoError(t, os.WriteFile(in, data, 0o644))
		out, err := exec.Command("xz", "-c", "--check=crc32", in).Output()
		require.NoError(t, err)
		return out
	}
	bz := filepath.Join(dir, "vmlinuz")
	require.NoError(t, os.WriteFile(bz, append(fakeBzImage(4, xz(want)), 1, 2, 3, 4), 0o644))
	cfg := Config{Out: filepath.Join(dir, "out"), Cache: dir}
	k := &KernelArtifacts{Vmlinuz: bz}
	path, err := Vmlinux(context.Background(), cfg, k)
	require.NoError(t, err)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, want, got)

	require.NoError(t, os.WriteFile(bz, fakeBzImage(4, xz([]byte("not an ELF file at all"))), 0o644))
	_, err = Vmlinux(context.Background(), cfg, k)
	require.ErrorContains(t, err, "unpacked payload")
}

package images

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/testenv"
)

// TestKVPDaemonEntries fetches Debian's hv_kvp_daemon and its runtime:
// the daemon is a dynamically linked x86-64 program whose interpreter and
// libraries are among the entries, and os-release names Debian.
func TestKVPDaemonEntries(t *testing.T) {
	for _, c := range []string{"apt-cache", "apt-get", "dpkg"} {
		if _, err := exec.LookPath(c); err != nil {
			testenv.Skip(t, "%s not installed (not a Debian host)", c)
		}
	}
	cfg := Config{Out: t.TempDir()}
	entries, err := KVPDaemonEntries(context.Background(), cfg)
	require.NoError(t, err)
	paths := map[string]string{}
	for _, e := range entries {
		paths[e.Path] = e.HostPath
	}
	f, err := elf.Open(paths[KVPDaemon])
	require.NoError(t, err)
	defer f.Close()
	libs, err := f.ImportedLibraries()
	require.NoError(t, err)
	for _, lib := range libs {
		require.Contains(t, paths, "lib/x86_64-linux-gnu/"+lib, "library %s", lib)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			_, err := p.ReadAt(b, 0)
			require.NoError(t, err)
			require.Contains(t, paths, string(b[1:len(b)-1]), "interpreter")
		}
	}
	osr, err := os.ReadFile(paths["etc/os-release"])
	require.NoError(t, err)
	require.Contains(t, string(osr), `NAME="Debian GNU/Linux"`)
}

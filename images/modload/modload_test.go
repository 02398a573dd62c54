//go:build linux

package modload

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/images/moddep"
)

// These tests stop before finit_module: loading into the host kernel is not
// something a unit test may do. The happy path is exercised by booting the
// guest initramfs (see images' boot test).

func TestDir(t *testing.T) {
	d, err := Dir()
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(d, "/lib/modules/"), d)
	assert.Greater(t, len(d), len("/lib/modules/"))
}

func TestLoadMissingModulesDep(t *testing.T) {
	_, err := LoadAll(t.TempDir(), nil)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestLoadBadModulesDep(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.dep"), []byte("a.ko: b.ko\nb.ko: a.ko\n"), 0o644))
	_, err := LoadAll(dir, nil)
	assert.ErrorIs(t, err, moddep.ErrCycle)
	_, err = Load(dir, nil, "c")
	assert.ErrorIs(t, err, moddep.ErrUnknownModule)
}

func TestLoadStopsAtMissingFile(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.dep"), []byte("kernel/a.ko:\n"), 0o644))
	loaded, err := Load(dir, nil, "a")
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Empty(t, loaded)
	assert.Contains(t, err.Error(), "kernel/a.ko")
}

// TestLoadSkipsAbsentHardware: a module whose init says ENODEV and the
// modules that need it are skipped; any other failure stops the load.
func TestLoadSkipsAbsentHardware(t *testing.T) {
	deps := moddep.Deps{"hv_vmbus.ko": nil, "hv_utils.ko": {"hv_vmbus.ko"}, "virtio.ko": nil, "virtio_blk.ko": {"virtio.ko"}}
	order, err := deps.All()
	require.NoError(t, err)
	var tried []string
	load := func(path, _ string) error {
		tried = append(tried, filepath.Base(path))
		switch filepath.Base(path) {
		case "hv_vmbus.ko":
			return fmt.Errorf("finit_module %s: %w", path, unix.ENODEV)
		}
		return nil
	}
	loaded, err := loadOrder("/m", order, nil, deps, load)
	require.NoError(t, err)
	assert.Equal(t, []string{"virtio.ko", "virtio_blk.ko"}, loaded)
	assert.NotContains(t, tried, "hv_utils.ko", "never tried without hv_vmbus")

	load = func(path, _ string) error {
		if filepath.Base(path) == "virtio.ko" {
			return fmt.Errorf("finit_module %s: %w", path, unix.ENOEXEC)
		}
		return nil
	}
	loaded, err = loadOrder("/m", order, nil, deps, load)
	assert.ErrorIs(t, err, unix.ENOEXEC)
	assert.NotContains(t, loaded, "virtio_blk.ko")
}

//go:build linux

package modload

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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

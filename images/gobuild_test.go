package images

import (
	"context"
	"debug/elf"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBuildGoIsStatic(t *testing.T) {
	out := filepath.Join(t.TempDir(), "agent")
	require.NoError(t, BuildGo(context.Background(), AgentPackage, out))
	f, err := elf.Open(out)
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, elf.EM_X86_64, f.Machine)
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "an initramfs has no dynamic loader: the binary must be static")
	}
	libs, err := f.ImportedLibraries()
	require.NoError(t, err)
	assert.Empty(t, libs)

	err = BuildGo(context.Background(), "./images/does-not-exist", filepath.Join(t.TempDir(), "x"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "go build ./images/does-not-exist")
}

func TestSourceKey(t *testing.T) {
	ctx := context.Background()
	a, err := SourceKey(ctx, AgentPackage)
	require.NoError(t, err)
	b, err := SourceKey(ctx, AgentPackage)
	require.NoError(t, err)
	assert.Equal(t, a, b, "stable for unchanged sources")
	c, err := SourceKey(ctx, "./images/moddep")
	require.NoError(t, err)
	assert.NotEqual(t, a, c, "the agent's key covers more than moddep's")
}

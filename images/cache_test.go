package images

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCached(t *testing.T) {
	dir := t.TempDir()
	art := filepath.Join(dir, "out.bin")
	builds := 0
	build := func(content string) func(string) error {
		return func(tmp string) error {
			builds++
			assert.Equal(t, ".bin", filepath.Ext(tmp), "tmp keeps the suffix")
			return os.WriteFile(tmp, []byte(content), 0o644)
		}
	}

	rebuilt, err := Cached(art, "k1", build("one"))
	require.NoError(t, err)
	assert.True(t, rebuilt, "first build")

	rebuilt, err = Cached(art, "k1", build("unused"))
	require.NoError(t, err)
	assert.False(t, rebuilt, "same key: hit")
	assert.Equal(t, 1, builds)

	rebuilt, err = Cached(art, "k2", build("two"))
	require.NoError(t, err)
	assert.True(t, rebuilt, "new key: miss")
	got, err := os.ReadFile(art)
	require.NoError(t, err)
	assert.Equal(t, "two", string(got))

	// A corrupt artifact (same size, other bytes) is detected and rebuilt.
	require.NoError(t, os.WriteFile(art, []byte("twO"), 0o644))
	rebuilt, err = Cached(art, "k2", build("two"))
	require.NoError(t, err)
	assert.True(t, rebuilt, "corrupt artifact: rebuild")
	got, err = os.ReadFile(art)
	require.NoError(t, err)
	assert.Equal(t, "two", string(got))

	// A missing artifact with a stamp is rebuilt too.
	require.NoError(t, os.Remove(art))
	rebuilt, err = Cached(art, "k2", build("two"))
	require.NoError(t, err)
	assert.True(t, rebuilt)

	// A garbled stamp is a miss, not an error.
	require.NoError(t, os.WriteFile(StampPath(art), []byte("{"), 0o644))
	rebuilt, err = Cached(art, "k2", build("two"))
	require.NoError(t, err)
	assert.True(t, rebuilt)
	assert.Equal(t, 5, builds)
}

func TestCachedBuildFailureKeepsNoStamp(t *testing.T) {
	dir := t.TempDir()
	art := filepath.Join(dir, "out")
	boom := errors.New("boom")
	_, err := Cached(art, "k", func(tmp string) error {
		require.NoError(t, os.WriteFile(tmp, []byte("half"), 0o644))
		return boom
	})
	require.ErrorIs(t, err, boom)
	_, err = os.Stat(art)
	assert.True(t, errors.Is(err, os.ErrNotExist), "no artifact after a failed build")
	_, err = os.Stat(StampPath(art))
	assert.True(t, errors.Is(err, os.ErrNotExist), "no stamp after a failed build")
	left, err := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	require.NoError(t, err)
	assert.Empty(t, left, "temporary output removed")
}

func TestCachedDirectory(t *testing.T) {
	dir := t.TempDir()
	art := filepath.Join(dir, "tree")
	mk := func(tmp string) error {
		if err := os.MkdirAll(filepath.Join(tmp, "sub"), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(tmp, "sub", "f"), []byte("x"), 0o644)
	}
	rebuilt, err := Cached(art, "k", mk)
	require.NoError(t, err)
	require.True(t, rebuilt)
	rebuilt, err = Cached(art, "k", mk)
	require.NoError(t, err)
	require.False(t, rebuilt)

	// A file added inside the tree counts as corruption.
	require.NoError(t, os.WriteFile(filepath.Join(art, "extra"), nil, 0o644))
	rebuilt, err = Cached(art, "k", mk)
	require.NoError(t, err)
	assert.True(t, rebuilt)
	_, err = os.Stat(filepath.Join(art, "extra"))
	assert.True(t, errors.Is(err, os.ErrNotExist), "rebuilt tree replaces the old one")
}

func TestHashPathTreeSensitivity(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644))
	a, err := HashPath(dir)
	require.NoError(t, err)
	require.NoError(t, os.Chmod(filepath.Join(dir, "f"), 0o755))
	b, err := HashPath(dir)
	require.NoError(t, err)
	assert.NotEqual(t, a, b, "mode is part of a tree's hash")
	require.NoError(t, os.Rename(filepath.Join(dir, "f"), filepath.Join(dir, "g")))
	c, err := HashPath(dir)
	require.NoError(t, err)
	assert.NotEqual(t, b, c, "names are part of a tree's hash")
}

func TestKeyOf(t *testing.T) {
	assert.NotEqual(t, KeyOf("ab", "c"), KeyOf("a", "bc"))
	assert.Equal(t, KeyOf("a", "b"), KeyOf("a", "b"))
	assert.Len(t, KeyOf(), 64)
}

package images

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/testenv"
)

func TestDebSrcStanzas(t *testing.T) {
	sources := []byte(`Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro

Types: deb
URIs: http://mirror.example/debian
Suites: trixie
Enabled: no
`)
	got := debSrcStanzas([][]byte{sources, sources})
	assert.Equal(t, `Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

`, got, "Debian's enabled deb stanzas once each, as deb-src, comments dropped")
	assert.Empty(t, debSrcStanzas([][]byte{[]byte("Types: deb\nURIs: https://packages.cloud.google.com/apt\n")}))
}

func TestDebSrcLines(t *testing.T) {
	list := []byte(`# comment
deb http://deb.debian.org/debian bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://security.debian.org/debian-security bookworm-security main
deb-src http://deb.debian.org/debian bookworm main
deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main
`)
	assert.Equal(t, "deb-src http://deb.debian.org/debian bookworm main\n"+
		"deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://security.debian.org/debian-security bookworm-security main\n",
		debSrcLines([][]byte{list, list}))
}

func TestReadAptSourcesSkipsOurs(t *testing.T) {
	dir := t.TempDir()
	d := filepath.Join(dir, "sources.list.d")
	require.NoError(t, os.MkdirAll(d, 0o755))
	for name, body := range map[string]string{
		"debian.sources":      "Types: deb\nURIs: http://deb.debian.org/debian\n",
		"vmm-deb-src.sources": "Types: deb-src\nURIs: http://deb.debian.org/debian\n",
		"other.list":          "deb http://deb.debian.org/debian bookworm main\n",
		"x.list.save":         "deb http://deb.debian.org/debian sid main\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(d, name), []byte(body), 0o644))
	}
	deb822, oneLine, err := readAptSources(dir)
	require.NoError(t, err)
	require.Len(t, deb822, 1)
	assert.Contains(t, string(deb822[0]), "Types: deb\n")
	assert.Equal(t, "deb-src http://deb.debian.org/debian bookworm main\n", debSrcLines(oneLine))
}

func TestHasSourceVersion(t *testing.T) {
	show := []byte("Package: qemu\nBinary: qemu-system-x86\nVersion: 1:7.2+dfsg-7+deb12u18\nBuild-Depends: x,\n y\n\n" +
		"Package: qemu\nVersion: 1:7.2+dfsg-7+deb12u15\n\nPackage: other\nVersion: 1:7.2+dfsg-7+deb12u16\n")
	assert.True(t, hasSourceVersion(show, "qemu", "1:7.2+dfsg-7+deb12u18"))
	assert.True(t, hasSourceVersion(show, "qemu", "1:7.2+dfsg-7+deb12u15"))
	assert.False(t, hasSourceVersion(show, "qemu", "1:7.2+dfsg-7+deb12u16"), "another package's version")
	assert.False(t, hasSourceVersion(nil, "qemu", "1"))
}

func TestPatchedQEMUKey(t *testing.T) {
	a := PatchedQEMUKey("qemu", "1:7.2+dfsg-7+deb12u18")
	assert.Equal(t, a, PatchedQEMUKey("qemu", "1:7.2+dfsg-7+deb12u18"))
	assert.NotEqual(t, a, PatchedQEMUKey("qemu", "1:7.2+dfsg-7+deb12u19"), "a Debian update rebuilds")
	args := strings.Join(outerConfigureArgs("v"), " ")
	for _, want := range []string{"--target-list=x86_64-softmmu", "--enable-tcg", "--enable-virtfs", "--datadir=/usr/share",
		"--firmwarepath=/usr/share/qemu:", "--disable-install-blobs", "--with-devices-x86_64=vmm-outer"} {
		assert.Contains(t, args, want)
	}
	assert.Contains(t, outerDevices, "CONFIG_VIRTIO_9P=y")
}

// cr8PreImage rebuilds the lines the patch expects (its context and removed
// lines), so the patch can be tried without QEMU's source.
func cr8PreImage(t *testing.T) string {
	var b strings.Builder
	in := false
	for _, l := range strings.Split(cr8Patch, "\n") {
		switch {
		case strings.HasPrefix(l, "@@"):
			in = true
		case !in, strings.HasPrefix(l, "+"):
		case strings.HasPrefix(l, " "), strings.HasPrefix(l, "-"):
			b.WriteString(l[1:] + "\n")
		case l == "":
		default:
			t.Fatalf("unexpected patch line %q", l)
		}
	}
	return b.String()
}

func TestApplyCR8Patch(t *testing.T) {
	if _, err := exec.LookPath("patch"); err != nil {
		testenv.Skip(t, "patch not installed")
	}
	cfg, err := Config{Out: t.TempDir()}.WithDefaults()
	require.NoError(t, err)
	src := t.TempDir()
	file := filepath.Join(src, patchedFile)
	require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o755))
	pre := cr8PreImage(t)
	require.NotContains(t, pre, cr8PatchMarker)
	require.NoError(t, os.WriteFile(file, []byte("/* lines before */\n"+pre), 0o644))

	ctx := context.Background()
	require.NoError(t, applyCR8Patch(ctx, cfg, t.TempDir(), src))
	got, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(string(got), cr8PatchMarker))
	assert.Contains(t, string(got), "qemu_mutex_unlock_iothread();")

	err = applyCR8Patch(ctx, cfg, t.TempDir(), src)
	require.Error(t, err, "a second application is refused, not reversed")
	assert.Contains(t, err.Error(), "cr8-bql.patch")
}

package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"github.com/vmmdev/vmm/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeModule returns a minimal ELF64 relocatable file whose only content is
// a .modinfo section, which is all the image builder reads from a module.
func fakeModule(t *testing.T, modinfo string) []byte {
	t.Helper()
	shstr := "\x00.modinfo\x00.shstrtab\x00"
	const ehsize, shentsize = 64, 64
	data := []byte(modinfo)
	infoOff := uint64(ehsize)
	strOff := infoOff + uint64(len(data))
	shOff := strOff + uint64(len(shstr))
	var b bytes.Buffer
	le := binary.LittleEndian
	ident := [16]byte{0x7f, 'E', 'L', 'F', 2, 1, 1}
	b.Write(ident[:])
	for _, v := range []any{uint16(1), uint16(62), uint32(1), uint64(0), uint64(0), shOff,
		uint32(0), uint16(ehsize), uint16(0), uint16(0), uint16(shentsize), uint16(3), uint16(2)} {
		require.NoError(t, binary.Write(&b, le, v))
	}
	b.Write(data)
	b.WriteString(shstr)
	section := func(name, typ uint32, off, size uint64) {
		for _, v := range []any{name, typ, uint64(0), uint64(0), off, size, uint32(0), uint32(0), uint64(1), uint64(0)} {
			require.NoError(t, binary.Write(&b, le, v))
		}
	}
	section(0, 0, 0, 0)
	section(1, 1, infoOff, uint64(len(data)))  // PROGBITS .modinfo
	section(10, 3, strOff, uint64(len(shstr))) // STRTAB .shstrtab
	return b.Bytes()
}

func TestReadModinfo(t *testing.T) {
	mi, err := readModinfo(fakeModule(t, "license=GPL\x00depends=kvm,ccp\x00name=kvm_amd\x00vermagic=6.1.0 SMP\x00"))
	require.NoError(t, err)
	assert.Equal(t, modinfo{Name: "kvm_amd", Depends: []string{"kvm", "ccp"}, Vermagic: "6.1.0 SMP"}, mi)

	_, err = readModinfo([]byte("not elf"))
	assert.Error(t, err)
}

func TestParseModinfoEdgeCases(t *testing.T) {
	assert.Empty(t, parseModinfo([]byte("depends=\x00")).Depends)
	assert.Equal(t, []string{"a"}, parseModinfo([]byte("garbage\x00depends=a,,\x00\x00")).Depends)
}

func FuzzParseModinfo(f *testing.F) {
	f.Add([]byte("depends=kvm,ccp\x00name=kvm_amd\x00"))
	f.Add([]byte("=\x00=\x00depends"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, d := range parseModinfo(b).Depends {
			if d == "" {
				t.Fatal("empty dependency name")
			}
		}
	})
}

func writeModule(t *testing.T, root, rel string, image []byte) {
	t.Helper()
	p := filepath.Join(root, rel)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, image, 0o644))
}

func TestCopyModulesAndClosure(t *testing.T) {
	src := t.TempDir()
	writeModule(t, src, "kernel/virt/lib/irqbypass.ko", fakeModule(t, "depends=\x00"))
	writeModule(t, src, "kernel/arch/x86/kvm/kvm.ko", fakeModule(t, "depends=irqbypass\x00"))
	writeModule(t, src, "kernel/arch/x86/kvm/kvm-amd.ko", fakeModule(t, "depends=kvm,ccp\x00"))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, err := zw.Write(fakeModule(t, "depends=\x00name=ccp\x00"))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	writeModule(t, src, "kernel/drivers/crypto/ccp/ccp.ko.gz", gz.Bytes())
	writeModule(t, src, "kernel/drivers/unrelated.ko", fakeModule(t, "depends=\x00"))
	require.NoError(t, os.WriteFile(filepath.Join(src, "modules.builtin"), []byte("kernel/x.ko\n"), 0o644))

	root := t.TempDir()
	dst := filepath.Join(root, "lib", "modules", "6.1.0-t")
	cfg, err := Config{Out: t.TempDir()}.WithDefaults()
	require.NoError(t, err)
	require.NoError(t, copyModules(context.Background(), cfg, src, dst, []string{"kvm-amd"}))

	order, err := ModuleClosure(root, "6.1.0-t", "kvm_amd")
	require.NoError(t, err)
	rel := make([]string, len(order))
	for i, p := range order {
		r, err := filepath.Rel(dst, p)
		require.NoError(t, err)
		rel[i] = r
		_, err = os.Stat(p)
		require.NoError(t, err, "closure names a file that was copied")
	}
	assert.Equal(t, []string{
		"kernel/virt/lib/irqbypass.ko",
		"kernel/arch/x86/kvm/kvm.ko",
		"kernel/drivers/crypto/ccp/ccp.ko", // decompressed, suffix dropped
		"kernel/arch/x86/kvm/kvm-amd.ko",
	}, rel)
	ccp, err := os.ReadFile(filepath.Join(dst, "kernel/drivers/crypto/ccp/ccp.ko"))
	require.NoError(t, err)
	mi, err := readModinfo(ccp)
	require.NoError(t, err)
	assert.Equal(t, "ccp", mi.Name)
	_, err = os.Stat(filepath.Join(dst, "kernel/drivers/unrelated.ko"))
	assert.True(t, os.IsNotExist(err), "modules outside the closure are left out")
	assert.FileExists(t, filepath.Join(dst, "modules.builtin"))

	err = copyModules(context.Background(), cfg, src, filepath.Join(t.TempDir(), "x"), []string{"nope"})
	assert.Error(t, err)
}

func TestModuleImageXZ(t *testing.T) {
	xz, err := exec.LookPath("xz")
	if err != nil {
		testenv.Skip(t, "xz not installed (make setup installs xz-utils)")
	}
	dir := t.TempDir()
	img := fakeModule(t, "depends=\x00")
	p := filepath.Join(dir, "m.ko")
	require.NoError(t, os.WriteFile(p, img, 0o644))
	require.NoError(t, exec.Command(xz, p).Run())
	cfg, err := Config{Out: dir}.WithDefaults()
	require.NoError(t, err)
	got, err := moduleImage(context.Background(), cfg, p+".xz")
	require.NoError(t, err)
	assert.Equal(t, img, got)
}

const aptShowMeta = `Package: linux-image-amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)
Description: Linux for 64-bit PCs (meta-package)
`

func TestKernelDependency(t *testing.T) {
	p, err := kernelDependency([]byte(aptShowMeta))
	require.NoError(t, err)
	assert.Equal(t, "linux-image-6.1.0-56-amd64", p)
	assert.Equal(t, "6.1.192-2", field([]byte(aptShowMeta), "Version"))

	_, err = kernelDependency([]byte("Package: x\nDepends: libc6\n"))
	assert.ErrorIs(t, err, ErrNoKernelPackage)
}

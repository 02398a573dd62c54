package images

import (
	"context"
	"github.com/vmmdev/vmm/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUnpackKernel builds a tiny fake kernel package with dpkg-deb and checks
// that unpackKernel keeps the kernel, its config and exactly the requested
// modules' closure, through the same dpkg -x step as the real package.
func TestUnpackKernel(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		testenv.Skip(t, "dpkg-deb not installed (not a Debian host)")
	}
	const release = "6.1.0-99-amd64"
	pkg := t.TempDir()
	files := map[string][]byte{
		"DEBIAN/control":          []byte("Package: linux-image-" + release + "\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@example.invalid>\nDescription: fake\n"),
		"boot/vmlinuz-" + release: []byte("bzImage"),
		"boot/config-" + release:  []byte("CONFIG_KVM=m\n"),
		"lib/modules/" + release + "/kernel/virt/lib/irqbypass.ko":       fakeModule(t, "depends=\x00"),
		"lib/modules/" + release + "/kernel/arch/x86/kvm/kvm.ko":         fakeModule(t, "depends=irqbypass\x00"),
		"lib/modules/" + release + "/kernel/drivers/virtio/virtio.ko":    fakeModule(t, "depends=\x00"),
		"lib/modules/" + release + "/kernel/drivers/gpu/drm/unneeded.ko": fakeModule(t, "depends=\x00"),
		"lib/modules/" + release + "/modules.builtin":                    []byte("kernel/drivers/tty/serial/8250/8250.ko\n"),
	}
	for p, data := range files {
		writeModule(t, pkg, p, data)
	}
	deb := filepath.Join(t.TempDir(), "k.deb")
	out, err := exec.Command("dpkg-deb", "--build", "--root-owner-group", pkg, deb).CombinedOutput()
	require.NoError(t, err, string(out))

	cfg, err := Config{Out: t.TempDir(), Modules: []string{"kvm", "virtio"}}.WithDefaults()
	require.NoError(t, err)
	dst := filepath.Join(t.TempDir(), "kernel")
	require.NoError(t, unpackKernel(context.Background(), cfg, deb, release, dst))

	got, err := os.ReadFile(filepath.Join(dst, "vmlinuz-"+release))
	require.NoError(t, err)
	assert.Equal(t, "bzImage", string(got))
	assert.FileExists(t, filepath.Join(dst, "config-"+release))
	k := &KernelArtifacts{Version: release, ModulesRoot: filepath.Join(dst, "modules")}
	dep, err := os.ReadFile(filepath.Join(k.ModulesDir(), "modules.dep"))
	require.NoError(t, err)
	assert.Equal(t, "kernel/arch/x86/kvm/kvm.ko: kernel/virt/lib/irqbypass.ko\nkernel/drivers/virtio/virtio.ko:\nkernel/virt/lib/irqbypass.ko:\n", string(dep))
	assert.NoFileExists(t, filepath.Join(k.ModulesDir(), "kernel/drivers/gpu/drm/unneeded.ko"))

	entries, err := ModuleEntries(k, "kvm")
	require.NoError(t, err)
	var paths []string
	for _, e := range entries {
		paths = append(paths, e.Path)
	}
	assert.Equal(t, []string{
		"lib/modules/" + release + "/kernel/virt/lib/irqbypass.ko",
		"lib/modules/" + release + "/kernel/arch/x86/kvm/kvm.ko",
		"lib/modules/" + release + "/modules.dep",
	}, paths)
	assert.Equal(t, "kernel/arch/x86/kvm/kvm.ko: kernel/virt/lib/irqbypass.ko\nkernel/virt/lib/irqbypass.ko:\n", string(entries[2].Data),
		"the initramfs's modules.dep lists exactly its modules")

	left, err := filepath.Glob(filepath.Join(cfg.Out, "unpack-*"))
	require.NoError(t, err)
	assert.Empty(t, left, "scratch extraction removed")

	// A missing step binary or a broken package fails naming the step.
	require.NoError(t, os.WriteFile(deb, []byte("not a deb"), 0o644))
	err = unpackKernel(context.Background(), cfg, deb, release, filepath.Join(t.TempDir(), "k2"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "dpkg -x")
}

package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"github.com/vmmdev/vmm/internal/testenv"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
)

func TestParseLdd(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd6b5f2000)\n" +
		"\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f96a4900000)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f96a3e00000)\r\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f96a5bf3000)\n" +
		"\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f96a4900000)\n"
	libs, err := parseLdd(out)
	require.NoError(t, err)
	require.Equal(t, []string{
		"/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libz.so.1", "/lib64/ld-linux-x86-64.so.2",
	}, libs)

	_, err = parseLdd("\tlibfoo.so.1 => not found\n\t/lib64/ld-linux-x86-64.so.2 (0x1)\n")
	require.ErrorContains(t, err, "missing library")
	_, err = parseLdd("\tstatically linked\n")
	require.ErrorContains(t, err, "no libraries")
}

func readOuterArchive(t *testing.T, p string) map[string][]byte {
	t.Helper()
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	raw, err := io.ReadAll(zr)
	require.NoError(t, err)
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	require.NoError(t, err)
	files := map[string][]byte{}
	for _, r := range recs {
		var data []byte
		if r.ReaderAt != nil {
			data, err = io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
			require.NoError(t, err)
		}
		files[r.Name] = data
	}
	return files
}

// fakeKernel lays out KernelArtifacts with a modules.dep for the KVM closure.
func fakeKernel(t *testing.T) *KernelArtifacts {
	t.Helper()
	dir := t.TempDir()
	k := &KernelArtifacts{Version: "6.1.0-99-amd64", Vmlinuz: filepath.Join(dir, "vmlinuz"), ModulesRoot: filepath.Join(dir, "mods")}
	require.NoError(t, os.WriteFile(k.Vmlinuz, []byte("bzImage"), 0o644))
	md := k.ModulesDir()
	mods := map[string]string{
		"kernel/virt/lib/irqbypass.ko":        "",
		"kernel/drivers/net/tun.ko":           "",
		"kernel/drivers/crypto/ccp/ccp.ko":    "",
		"kernel/arch/x86/kvm/kvm.ko":          "kernel/virt/lib/irqbypass.ko",
		"kernel/arch/x86/kvm/kvm-amd.ko":      "kernel/arch/x86/kvm/kvm.ko kernel/drivers/crypto/ccp/ccp.ko kernel/virt/lib/irqbypass.ko",
		"kernel/drivers/virtio/virtio_pci.ko": "",
		"kernel/net/9p/9pnet.ko":              "",
		"kernel/net/9p/9pnet_virtio.ko":       "kernel/net/9p/9pnet.ko",
		"kernel/fs/9p/9p.ko":                  "kernel/net/9p/9pnet.ko",
	}
	var dep bytes.Buffer
	for rel, deps := range mods {
		require.NoError(t, os.MkdirAll(filepath.Join(md, filepath.Dir(rel)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(md, rel), []byte("ELF "+rel), 0o644))
		dep.WriteString(rel + ": " + deps + "\n")
	}
	require.NoError(t, os.WriteFile(filepath.Join(md, "modules.dep"), dep.Bytes(), 0o644))
	return k
}

func TestOuterInitramfs(t *testing.T) {
	if testing.Short() {
		testenv.Skip(t, "-short: this test builds the outer init with go build")
	}
	ctx := context.Background()
	cfg := Config{Out: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	k := fakeKernel(t)
	guest := filepath.Join(t.TempDir(), "guest.cpio.gz")
	require.NoError(t, os.WriteFile(guest, []byte("guest"), 0o644))
	vmm := filepath.Join(t.TempDir(), "vmm")
	require.NoError(t, os.WriteFile(vmm, []byte("vmm binary"), 0o755))
	scen := []byte(`[{"name":"a","args":["run"]}]`)

	out, err := OuterInitramfs(ctx, cfg, k, OuterContent{GuestInitramfs: guest, VMM: vmm, Scenarios: scen})
	require.NoError(t, err)
	files := readOuterArchive(t, out)
	require.Equal(t, []byte("bzImage"), files["guest/vmlinuz"])
	require.Equal(t, []byte("guest"), files["guest/guest.cpio.gz"])
	require.Equal(t, []byte("vmm binary"), files["vmm"])
	require.Equal(t, scen, files["scenarios.json"])
	require.NotEmpty(t, files["init"])
	require.Contains(t, files, "dev/console")
	modDir := "lib/modules/" + k.Version + "/"
	for _, m := range []string{"kernel/virt/lib/irqbypass.ko", "kernel/drivers/crypto/ccp/ccp.ko", "kernel/arch/x86/kvm/kvm.ko", "kernel/arch/x86/kvm/kvm-amd.ko"} {
		require.Equal(t, []byte("ELF "+m), files[modDir+m], m)
	}
	require.Contains(t, string(files[modDir+"modules.dep"]), "kernel/arch/x86/kvm/kvm-amd.ko:")
	require.NotContains(t, files, "usr/bin/qemu-system-x86_64")

	// Unchanged inputs reuse the archive; a changed scenario list rebuilds it.
	st1, err := os.ReadFile(StampPath(out))
	require.NoError(t, err)
	_, err = OuterInitramfs(ctx, cfg, k, OuterContent{GuestInitramfs: guest, VMM: vmm, Scenarios: scen})
	require.NoError(t, err)
	st2, err := os.ReadFile(StampPath(out))
	require.NoError(t, err)
	require.Equal(t, st1, st2)
	_, err = OuterInitramfs(ctx, cfg, k, OuterContent{GuestInitramfs: guest, Scenarios: []byte(`[]`)})
	require.NoError(t, err)
	files = readOuterArchive(t, out)
	require.Equal(t, []byte(`[]`), files["scenarios.json"])
	require.NotContains(t, files, "vmm")
	require.NotContains(t, files, "guest/grub.img")

	// A firmware disk comes with the host's SeaBIOS at the same path.
	bios, err := os.ReadFile(OuterSeaBIOS)
	if err != nil {
		testenv.Skip(t, "no SeaBIOS on this host (make setup installs seabios): %v", err)
	}
	disk := filepath.Join(t.TempDir(), "grub.img")
	require.NoError(t, os.WriteFile(disk, []byte("MBR"), 0o644))
	_, err = OuterInitramfs(ctx, cfg, k, OuterContent{GuestInitramfs: guest, VMM: vmm, Scenarios: scen, FirmwareDisk: disk})
	require.NoError(t, err)
	files = readOuterArchive(t, out)
	require.Equal(t, []byte("MBR"), files["guest/grub.img"])
	require.Equal(t, bios, files["usr/share/seabios/bios-256k.bin"])
	require.NotContains(t, files, modDir+"kernel/fs/9p/9p.ko")

	// The image share brings the modules that mount it, with both firmwares.
	if _, err := os.Stat(OuterOVMF()[0]); err != nil {
		testenv.Skip(t, "no OVMF on this host (make setup installs ovmf): %v", err)
	}
	_, err = OuterInitramfs(ctx, cfg, k, OuterContent{GuestInitramfs: guest, VMM: vmm, Scenarios: scen, ImageShare: true})
	require.NoError(t, err)
	files = readOuterArchive(t, out)
	for _, m := range []string{"kernel/drivers/virtio/virtio_pci.ko", "kernel/net/9p/9pnet.ko", "kernel/net/9p/9pnet_virtio.ko", "kernel/fs/9p/9p.ko"} {
		require.Equal(t, []byte("ELF "+m), files[modDir+m], m)
	}
	require.Equal(t, bios, files["usr/share/seabios/bios-256k.bin"])
	require.Contains(t, files, strings.TrimPrefix(OuterOVMF()[0], "/"))
}

func TestQEMUEntries(t *testing.T) {
	if _, err := exec.LookPath(QEMUBinary); err != nil {
		testenv.Skip(t, "qemu-system-x86_64 not installed (make setup installs it)")
	}
	entries, err := qemuEntries(context.Background(), Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	paths := map[string]bool{}
	for _, e := range entries {
		paths[e.Path] = true
		fi, err := os.Stat(e.HostPath)
		require.NoError(t, err)
		require.True(t, fi.Mode().IsRegular(), e.HostPath)
	}
	require.True(t, paths[OuterQEMU])
	require.True(t, paths["/usr/share/qemu/bios-microvm.bin"])
	require.True(t, paths["/lib64/ld-linux-x86-64.so.2"])
}

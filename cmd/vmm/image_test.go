package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/testenv"
	"github.com/vmmdev/vmm/internal/testimage"
	"github.com/vmmdev/vmm/storage/qcow2"
)

// runCLI runs vmm with args and returns the exit code, stdout and stderr.
func runCLI(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, nil, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestImageCommands: vmm image create makes qcow2 images (over backing
// files too) that qemu-img accepts, never overwrites a file, and vmm image
// info reports format, sizes and the backing chain, as text and JSON.
func TestImageCommands(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	require.NoError(t, os.WriteFile(base, bytes.Repeat([]byte{7}, 3<<20), 0o644))
	top := filepath.Join(dir, "top.qcow2")
	mid := filepath.Join(dir, "mid.qcow2")

	code, out, errOut := runCLI("image", "create", "--backing", "base.raw", mid)
	require.Equal(t, 0, code, errOut)
	require.Empty(t, out)
	code, _, errOut = runCLI("image", "create", "--backing", "mid.qcow2", top, "8M")
	require.Equal(t, 0, code, errOut)

	code, out, errOut = runCLI("image", "info", top)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "format: qcow2\n")
	require.Contains(t, out, "virtual size: 8 MiB (8388608 bytes)\n")
	require.Contains(t, out, "backing 1: mid.qcow2 ("+mid+", qcow2, virtual size 3145728)\n")
	require.Contains(t, out, "backing 2: base.raw ("+base+", raw, virtual size 3145728)\n")

	code, out, errOut = runCLI("image", "info", "--json", top)
	require.Equal(t, 0, code, errOut)
	var info imageInfo
	require.NoError(t, json.Unmarshal([]byte(out), &info))
	require.Equal(t, "qcow2", info.Format)
	require.Equal(t, 3, info.Version)
	require.Equal(t, int64(8<<20), info.VirtualSize)
	require.Positive(t, info.FileSize)
	require.Equal(t, []backingEntry{{"mid.qcow2", mid, "qcow2", 3 << 20}, {"base.raw", base, "raw", 3 << 20}}, info.Backing)

	code, out, errOut = runCLI("image", "info", "--json", base)
	require.Equal(t, 0, code, errOut)
	var rawInfo imageInfo
	require.NoError(t, json.Unmarshal([]byte(out), &rawInfo))
	require.Equal(t, imageInfo{Path: base, Format: "raw", VirtualSize: 3 << 20, FileSize: 3 << 20,
		AllocatedSize: rawInfo.AllocatedSize, Backing: []backingEntry{}}, rawInfo)

	// Refuses to overwrite, changing nothing.
	before := fileSum(t, top)
	code, _, errOut = runCLI("image", "create", top, "1G")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "file exists")
	require.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
	require.Equal(t, before, fileSum(t, top))

	if _, err := exec.LookPath("qemu-img"); err != nil {
		testenv.Skip(t, "qemu-img missing (Debian: qemu-utils)")
	}
	out1, err := exec.Command("qemu-img", "check", top).CombinedOutput()
	require.NoError(t, err, "%s", out1)
	out1, err = exec.Command("qemu-img", "info", "--backing-chain", top).CombinedOutput()
	require.NoError(t, err, "%s", out1)
	require.Contains(t, string(out1), "backing file: base.raw")
}

func TestImageUsage(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.qcow2")
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", []string{"image"}, 2, "usage: vmm image"},
		{"unknown subcommand", []string{"image", "convert"}, 2, `unknown command "convert"`},
		{"info without path", []string{"image", "info"}, 2, "want one image PATH"},
		{"info bad flag", []string{"image", "info", "--yaml", p}, 2, "yaml"},
		{"info missing file", []string{"image", "info", filepath.Join(dir, "none")}, 1, "no such file"},
		{"create without size", []string{"image", "create", p}, 2, "want PATH SIZE"},
		{"create bad size", []string{"image", "create", p, "lots"}, 2, "SIZE"},
		{"create unaligned size", []string{"image", "create", p, "1000"}, 1, "multiple of 512"},
		{"create backing format alone", []string{"image", "create", "--backing-format", "raw", p, "1M"}, 2, "--backing-format without --backing"},
		{"create missing backing", []string{"image", "create", "--backing", "none.raw", p}, 1, "no such file"},
		{"create bad backing format", []string{"image", "create", "--backing", p, "--backing-format", "vmdk", p}, 1, "vmdk"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(c.args...)
			require.Equal(t, c.code, code, errOut)
			require.Contains(t, errOut, c.want)
			require.Empty(t, out)
			if c.code == 1 {
				require.Equal(t, 1, strings.Count(errOut, "\n"), "one line: %q", errOut)
			}
			_, err := os.Stat(p)
			require.ErrorIs(t, err, os.ErrNotExist, "nothing created")
		})
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

func patchFile(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(b, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// TestBadImages: the bad inputs of issue 16 give one clear line and exit 1
// from vmm run (before any VM exists) and vmm image info, and no file
// changes, in snapshot mode or not.
func TestBadImages(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "bzImage")
	require.NoError(t, os.WriteFile(kernel, testimage.BzImage64([]byte{0xf4}), 0o644))
	noKVM := "--kvm-device=" + filepath.Join(dir, "no-such-kvm")
	mk := func(name string, size int64, backing string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, qcow2.Create(p, size, backing, nil))
		return p
	}
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	be64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

	truncated := mk("truncated.qcow2", 1<<30, "")
	require.NoError(t, os.Truncate(truncated, 100000))
	short := mk("short.qcow2", 1<<20, "")
	require.NoError(t, os.Truncate(short, 50))
	l1 := mk("l1.qcow2", 1<<20, "")
	patchFile(t, l1, 40, be64(1<<40))
	order := mk("order.qcow2", 1<<20, "")
	patchFile(t, order, 96, be32(7))
	gone := filepath.Join(dir, "gone.raw")
	require.NoError(t, os.WriteFile(gone, make([]byte, 1<<20), 0o644))
	missing := mk("missing.qcow2", 0, "gone.raw")
	require.NoError(t, os.Remove(gone))
	// a.qcow2 -> b.qcow2 -> c.qcow2, then b's backing name becomes
	// a.qcow2 (same length): a loop.
	mk("c.qcow2", 1<<20, "")
	b := mk("b.qcow2", 0, "c.qcow2")
	loop := mk("a.qcow2", 0, "b.qcow2")
	hdr, err := os.ReadFile(b)
	require.NoError(t, err)
	patchFile(t, b, int64(binary.BigEndian.Uint64(hdr[8:])), []byte("a.qcow2"))
	noUser := filepath.Join(dir, "seed")
	require.NoError(t, os.Mkdir(noUser, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(noUser, "meta-data"), []byte("instance-id: x\n"), 0o644))

	cases := []struct {
		name, image, want string
	}{
		{"truncated qcow2", truncated, "beyond the end of the file"},
		{"qcow2 shorter than a header", short, "shorter than a header"},
		{"L1 beyond the file", l1, "L1 table at 0x10000000000"},
		{"refcount order out of range", order, "refcount_order 7"},
		{"missing backing file", missing, "gone.raw: no such file"},
		{"backing loop", loop, "loop"},
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	require.NoError(t, err)
	sums := map[string][32]byte{}
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() {
			sums[f] = fileSum(t, f)
		}
	}
	oneLine := func(t *testing.T, code int, out, errOut, prefix, want string) {
		t.Helper()
		require.Equal(t, 1, code, errOut)
		require.Empty(t, out)
		require.Equal(t, 1, strings.Count(errOut, "\n"), "one line: %q", errOut)
		require.True(t, strings.HasPrefix(errOut, prefix), errOut)
		require.Contains(t, errOut, want)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, disk := range []string{c.image, c.image + ",snapshot", c.image + ",if=nvme", c.image + ",if=ahci,readonly"} {
				code, out, errOut := runCLI("run", noKVM, "--kernel", kernel, "--disk", disk)
				oneLine(t, code, out, errOut, "vmm run: ", c.want)
			}
			code, out, errOut := runCLI("run", noKVM, "--kernel", kernel, "--cdrom", c.image)
			oneLine(t, code, out, errOut, "vmm run: ", c.want)
			code, out, errOut = runCLI("image", "info", c.image)
			oneLine(t, code, out, errOut, "vmm image info: ", c.want)
		})
	}
	t.Run("cloud-init without user-data", func(t *testing.T) {
		code, out, errOut := runCLI("run", noKVM, "--kernel", kernel, "--cloud-init", noUser)
		oneLine(t, code, out, errOut, "vmm run: ", "no user-data")
	})
	t.Run("bad format option", func(t *testing.T) {
		code, _, errOut := runCLI("run", noKVM, "--kernel", kernel, "--disk", l1+",format=vmdk")
		require.Equal(t, 2, code)
		require.Contains(t, errOut, `unknown option "format=vmdk"`)
	})
	for f, s := range sums {
		require.Equal(t, s, fileSum(t, f), "%s changed", f)
	}
}

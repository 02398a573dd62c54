package vmm

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/testenv"
)

func TestParseFirmware(t *testing.T) {
	for _, c := range []struct {
		arg  string
		want FirmwareSpec
	}{
		{"seabios", FirmwareSpec{Path: SeaBIOSPath}},
		{"/x/bios.bin", FirmwareSpec{Path: "/x/bios.bin"}},
		{"ovmf.fd", FirmwareSpec{Path: "ovmf.fd"}},
		{"ovmf", FirmwareSpec{Path: OVMFCodePath, OVMF: true}},
		{"ovmf,vars=/v/x.fd", FirmwareSpec{Path: OVMFCodePath, OVMF: true, Vars: "/v/x.fd"}},
		{"ovmf,secure-boot,vars=a", FirmwareSpec{Path: OVMFCodePath, OVMF: true, Vars: "a", SecureBoot: true}},
		{"ovmf,code=/c/debug.fd", FirmwareSpec{Path: "/c/debug.fd", OVMF: true}},
		{"ovmf,vars=v,code=c", FirmwareSpec{Path: "c", OVMF: true, Vars: "v"}},
	} {
		got, err := ParseFirmware(c.arg)
		require.NoError(t, err, c.arg)
		require.Equal(t, c.want, got, c.arg)
	}
	for _, bad := range []string{"ovmf,", "ovmf,vars=", "ovmf,foo", "ovmf,vars=a,vars=b", "ovmf,secure-boot=1", "ovmf,secure-boot,secure-boot",
		"ovmf,code=", "ovmf,code", "ovmf,code=a,code=b"} {
		_, err := ParseFirmware(bad)
		require.ErrorIs(t, err, ErrInvalidConfig, bad)
		require.Contains(t, err.Error(), "ovmf takes code=PATH, vars=PATH and secure-boot", bad)
	}
	s, err := ParseFirmware("ovmf,secure-boot")
	require.NoError(t, err)
	require.Equal(t, OVMFSecureVarsPath, s.Template())
	require.Equal(t, OVMFCodePath, s.Path, "Secure Boot uses the no-SMM code too")
}

func requireOVMFFiles(t *testing.T) []byte {
	t.Helper()
	tmpl, err := os.ReadFile(OVMFVarsPath)
	if err != nil {
		testenv.Skip(t, "Debian's ovmf package is not installed: scripts/setup.sh installs it")
	}
	return tmpl
}

func TestOVMFConfigErrors(t *testing.T) {
	tmpl := requireOVMFFiles(t)
	dir := t.TempDir()
	short := filepath.Join(dir, "short.fd")
	require.NoError(t, os.WriteFile(short, tmpl[:len(tmpl)-4096], 0o600))
	odd := filepath.Join(dir, "odd.fd")
	require.NoError(t, os.WriteFile(odd, make([]byte, 5000), 0o600))
	for _, c := range []struct {
		fw, want string
	}{
		{"ovmf,vars=" + short, "bytes, but a store made from"},
		{"ovmf,vars=" + OVMFVarsPath, "that is an OVMF template"},
		{"ovmf,secure-boot,vars=" + OVMFSecureVarsPath, "that is an OVMF template"},
		{"ovmf,vars=" + dir, "not a regular file"},
		{"ovmf,bogus", "unknown or repeated option"},
		{"ovmf,code=" + filepath.Join(dir, "none.fd"), "no such file"},
		{"ovmf,code=" + dir, "not a regular file"},
		{"ovmf,code=" + odd, "a flash image is a multiple of 4 KiB"},
	} {
		cfg := Config{Firmware: c.fw, CPUs: 1, Memory: 256 << 20}
		err := cfg.Validate()
		require.ErrorIs(t, err, ErrInvalidConfig, c.fw)
		require.Contains(t, err.Error(), c.want, c.fw)
	}
	cfg := Config{Firmware: "ovmf,vars=" + filepath.Join(dir, "new.fd"), CPUs: 1, Memory: 256 << 20}
	require.NoError(t, cfg.Validate(), "a missing store is created")
}

func TestOVMFVarsStore(t *testing.T) {
	tmpl := requireOVMFFiles(t)
	path := filepath.Join(t.TempDir(), "vars.fd")
	spec, err := ParseFirmware("ovmf,vars=" + path)
	require.NoError(t, err)
	v, err := openVars(spec)
	require.NoError(t, err)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, tmpl, got, "created from the template")
	require.Equal(t, tmpl, v.init)
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left behind")

	// Locked: a second vmm is refused.
	_, err = openVars(spec)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.Contains(t, err.Error(), "in use by another vmm")

	// Writes go to the file, synced; the template stays.
	n, err := v.store().WriteAt([]byte{0x12, 0x34}, 4096)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	v.close()
	got, err = os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, []byte{0x12, 0x34}, got[4096:4098])
	shipped, err := os.ReadFile(OVMFVarsPath)
	require.NoError(t, err)
	require.Equal(t, tmpl, shipped)

	// Reopened after close: the stored contents, not the template.
	v, err = openVars(spec)
	require.NoError(t, err)
	defer v.close()
	require.Equal(t, []byte{0x12, 0x34}, v.init[4096:4098])

	// A per-run copy has no file.
	spec, err = ParseFirmware("ovmf")
	require.NoError(t, err)
	e, err := openVars(spec)
	require.NoError(t, err)
	require.Nil(t, e.file)
	require.Equal(t, tmpl, e.init)
}

func TestSoftOff(t *testing.T) {
	require.True(t, softOff(5), "the DSDT's \\_S5")
	require.True(t, softOff(0), "OVMF's ResetSystem shutdown")
	for _, typ := range []uint8{1, 2, 3, 4, 6, 7} {
		require.False(t, softOff(typ), "SLP_TYP %d", typ)
	}
}

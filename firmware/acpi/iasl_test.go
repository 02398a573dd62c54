package acpi

import (
	"bytes"
	"context"
	"github.com/vmmdev/vmm/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/firmware/acpi/aml"
	"github.com/vmmdev/vmm/layout"
)

// lookTool finds an ACPICA tool (Debian package acpica-tools). Locally a
// missing tool skips loudly; in CI (CI=true) it fails, because there these
// checks are the only outside opinion on the tables.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	testenv.Skip(t, "%s not found; install acpica-tools (make setup) to check the ACPI tables with ACPICA", name)
	return ""
}

// complaint matches what ACPICA prints about a bad table; iasl also marks bad
// data in a disassembly with "****" (acpiexec uses it for sleep banners).
var (
	complaint    = regexp.MustCompile(`(?i)warning|error|invalid|mismatch|AE_[A-Z_]+`)
	dslComplaint = regexp.MustCompile(`(?i)warning|error|invalid|mismatch|\*\*\*\*|AE_[A-Z_]+`)
)

func runTool(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return string(out)
}

// acpiFiles links tables for the direct-boot area and writes every SDT to
// dir as <NAME>.dat, returning the names. The RSDP is not an SDT and the
// tools do not take it as a binary file; the Go tests check it.
func acpiFiles(t *testing.T, dir string, cfg Config) []string {
	t.Helper()
	tables, err := Build(cfg)
	require.NoError(t, err)
	addrs, err := tables.Place(layout.ACPITables, layout.ACPITablesEnd)
	require.NoError(t, err)
	linked, err := tables.Link(addrs)
	require.NoError(t, err)
	var names []string
	for _, b := range tables.Blobs {
		if b.Name == RSDPName {
			continue
		}
		name := strings.ReplaceAll(b.Name, ".", "_")
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".dat"), linked[b.Name], 0o644))
		names = append(names, name)
	}
	return names
}

// fullConfig exercises every kind of content: several CPUs, a PCI-like root
// bridge with the resource descriptors it will need, and an MCFG.
func fullConfig(t *testing.T) Config {
	mcfg, err := MCFG(MCFGRegion{Base: 0xe0000000, StartBus: 0, EndBus: 0xff})
	require.NoError(t, err)
	pci := aml.Device("PCI0",
		aml.Name("_HID", aml.EISAID("PNP0A08")),
		aml.Name("_CID", aml.EISAID("PNP0A03")),
		aml.Name("_SEG", aml.Zero),
		aml.Name("_BBN", aml.Zero),
		aml.Name("_UID", aml.Zero),
		aml.Name("_CRS", aml.ResourceTemplate(
			aml.WordBusNumber(0, 0xff),
			aml.IO(true, 0xcf8, 0xcf8, 1, 8),
			aml.WordIO(0, 0xcf7),
			aml.WordIO(0xd00, 0xffff),
			aml.DWordMemory(aml.MemNonCacheable, true, 0xc0000000, 0xdfffffff),
			aml.QWordMemory(aml.MemPrefetchable, true, 0x8000000000, 0xffffffffff),
		)),
		aml.Name("_PRT", aml.Package(
			aml.Package(aml.Int(0x1ffff), aml.Zero, aml.Zero, aml.Int(16)),
			aml.Package(aml.Int(0x1ffff), aml.One, aml.Zero, aml.Int(17)),
		)),
	)
	return Config{CPUs: 4, Devices: []aml.Term{pci}, Extra: []SDT{mcfg}}
}

// TestIASL disassembles every table with iasl, requires no complaints, and
// recompiles the result to the same bytes.
func TestIASL(t *testing.T) {
	iasl := lookTool(t, "iasl")
	dir := t.TempDir()
	names := acpiFiles(t, dir, fullConfig(t))
	require.ElementsMatch(t, []string{"XSDT", "DSDT", "FACP", "APIC", "MCFG"}, names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			out := runTool(t, dir, iasl, "-d", name+".dat")
			assert.NotRegexp(t, dslComplaint, out, "iasl -d output")
			dsl, err := os.ReadFile(filepath.Join(dir, name+".dsl"))
			require.NoError(t, err)
			assert.NotRegexp(t, dslComplaint, string(dsl), "disassembly")

			// -on keeps name paths as written so the AML compares byte for byte.
			out = runTool(t, dir, iasl, "-on", "-p", "re_"+name, name+".dsl")
			assert.Contains(t, out, "0 Errors, 0 Warnings, 0 Remarks")
			orig, err := os.ReadFile(filepath.Join(dir, name+".dat"))
			require.NoError(t, err)
			re, err := os.ReadFile(filepath.Join(dir, "re_"+name+".aml"))
			require.NoError(t, err)
			require.Greater(t, len(re), headerSize)
			assert.Equal(t, orig[:8], re[:8], "signature and length")
			assert.True(t, bytes.Equal(orig[headerSize:], re[headerSize:]), "recompiled body differs")
		})
	}
}

// TestACPIExec loads the tables into ACPICA's acpiexec, the interpreter Linux
// uses, evaluates the objects Linux uses and enters S5 through the
// hardware-reduced sleep registers.
func TestACPIExec(t *testing.T) {
	acpiexec := lookTool(t, "acpiexec")
	dir := t.TempDir()
	names := acpiFiles(t, dir, fullConfig(t))
	args := []string{"-b", `evaluate \_S5; evaluate \_SB.PEVT._STA; evaluate \_SB.COM1._CRS; evaluate \_SB.C003._UID; sleep 5`}
	for _, n := range names {
		args = append(args, n+".dat")
	}
	out := runTool(t, dir, acpiexec, args...)
	assert.NotRegexp(t, complaint, out)
	assert.Contains(t, out, "FACP 0x")
	assert.Contains(t, out, "VMMFACP", "our FADT was used, not acpiexec's default")
	assert.Regexp(t, `\[Package\] Contains 2 Elements:\s+\[Integer\] = 0000000000000005\s+\[Integer\] = 0000000000000000`, out)
	assert.Contains(t, out, "[Integer] = 000000000000000F", "pvpanic _STA")
	assert.Contains(t, out, "47 01 F8 03 F8 03 00 08 22 10 00 79 00", "COM1 _CRS")
	assert.Contains(t, out, "[Integer] = 0000000000000003", "C003 _UID")
	assert.Contains(t, out, "Sleep-A: 05")
	assert.Contains(t, out, "HwExtendedSleep", "S5 through the sleep control register")
}

// TestACPIExecVMBus evaluates the VMBus device as Linux's hv_vmbus does.
// It is not in fullConfig: iasl refuses to recompile a _HID that is not a
// PNP or ACPI id, and "VMBUS" is neither (QEMU and Hyper-V use it anyway).
func TestACPIExecVMBus(t *testing.T) {
	acpiexec := lookTool(t, "acpiexec")
	dir := t.TempDir()
	cfg := fullConfig(t)
	cfg.Devices = append(cfg.Devices, VMBusDevice())
	names := acpiFiles(t, dir, cfg)
	args := []string{"-b", `evaluate \_SB.VMBS._CRS; evaluate \_SB.VMBS._HID; evaluate \_SB.VMBS._UID; evaluate \_SB.VMBS._STA`}
	for _, n := range names {
		args = append(args, n+".dat")
	}
	out := runTool(t, dir, acpiexec, args...)
	assert.NotRegexp(t, complaint, out)
	assert.Contains(t, out, "22 80 00 79 00", "_CRS: IRQNoFlags {7}")
	assert.Contains(t, out, `[String] Length 05 = "VMBUS"`)
	assert.Contains(t, out, "[Integer] = 0000000000000000", "_UID")
	assert.Contains(t, out, "[Integer] = 000000000000000F", "_STA")
}

package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/kvmtest"
)

func TestParseTestArgs(t *testing.T) {
	a := parseTestArgs([]string{"-test.paniconexit0", "-test.timeout=10m0s", "-test.run=^TestA$|KVM/sub",
		"-test.testlogfile=/tmp/x/testlog.txt", "-test.v=test2json", "-test.skip", "Slow", "-test.count=1"})
	require.Equal(t, []string{"-test.paniconexit0", "-test.timeout=10m0s", "-test.v=test2json", "-test.count=1"}, a.rest,
		"testlogfile dropped, rewritten flags pulled out")
	require.Equal(t, "^TestA$|KVM/sub", a.run)
	require.Equal(t, "Slow", a.skip)
	require.False(t, a.local)
	require.Equal(t, []string{"-test.list=^TestA$|KVM"}, a.listArgs())

	local, err := a.localArgs()
	require.NoError(t, err)
	require.Equal(t, append(a.base(), "-test.run=^TestA$|KVM/sub", "-test.skip=^TestKVM|Slow"), local)
	require.Equal(t, append(a.base(), "-test.run=^(TestKVMOne|TestKVMTwo\\.x)$/sub", "-test.skip=Slow"),
		a.nestedArgs([]string{"TestKVMOne", "TestKVMTwo.x"}))

	for _, local := range [][]string{{"-test.fuzz=FuzzX"}, {"-test.bench", "."}, {"-test.list=."}} {
		require.True(t, parseTestArgs(local).local, "%v runs here", local)
	}
	require.False(t, parseTestArgs([]string{"-test.bench="}).local)

	_, err = parseTestArgs([]string{"-test.skip=A/B"}).localArgs()
	require.ErrorContains(t, err, "A/B")
	require.Equal(t, []string{"-test.list=."}, parseTestArgs(nil).listArgs())
}

func TestSplitPattern(t *testing.T) {
	for p, want := range map[string][2]string{
		"A":       {"A", ""},
		"A/B/C":   {"A", "B/C"},
		"[/]x/y":  {"[/]x", "y"},
		"/B":      {"", "B"},
		"A[a/]/b": {"A[a/]", "b"},
	} {
		top, sub := splitPattern(p)
		require.Equal(t, want, [2]string{top, sub}, p)
	}
}

func TestPickKVMTests(t *testing.T) {
	list := "TestA\nTestKVMRun\nBenchmarkKVM\nTestKVMOther\nExampleX\nok  \tpkg\t0.1s\n"
	require.Equal(t, []string{"TestKVMRun", "TestKVMOther"}, kvmTests(list))
	require.Empty(t, kvmTests("TestA\n"))
}

func TestHoldBack(t *testing.T) {
	var out bytes.Buffer
	h := &holdBack{w: &out}
	for _, chunk := range []string{"=== RUN A\n--- PA", "SS: A\nPASS\nnot", " the end\n", "PASS\n"} {
		_, err := h.Write([]byte(chunk))
		require.NoError(t, err)
	}
	saidFail, err := h.close()
	require.NoError(t, err)
	require.False(t, saidFail)
	require.Equal(t, "=== RUN A\n--- PASS: A\nPASS\nnot the end\n", out.String(),
		"a result line followed by more output is kept; the closing one is dropped")

	out.Reset()
	h = &holdBack{w: &out}
	_, _ = h.Write([]byte("x\n\x16FAIL\ntesting: warning: no tests to run\n"))
	saidFail, _ = h.close()
	require.True(t, saidFail)
	require.Equal(t, "x\n", out.String())

	out.Reset()
	h = &holdBack{w: &out}
	_, _ = h.Write([]byte("PASS\npanic: boom"))
	saidFail, _ = h.close()
	require.False(t, saidFail)
	require.Equal(t, "PASS\npanic: boom\n", out.String(), "an unterminated last line is kept, with what it followed")
}

func TestNestedEnv(t *testing.T) {
	env := nestedEnv([]string{"PATH=/bin", "TMPDIR=/var/scratch", kvmtest.EnvWhere + "=nested", "CI=true"})
	require.Equal(t, []string{"PATH=/bin", "CI=true", kvmtest.EnvWhere + "=local", "TMPDIR=/tmp"}, env)
}

func TestTestTimeout(t *testing.T) {
	require.Equal(t, 600.0+graceS, testTimeoutS([]string{"-test.v", "-test.timeout=10m0s"}))
	require.Equal(t, 0.0, testTimeoutS([]string{"-test.timeout=0s"}))
	require.Equal(t, 0.0, testTimeoutS(nil))
	require.True(t, testJSON([]string{"-test.v=test2json"}))
	require.False(t, testJSON([]string{"-test.v=true"}))
}

func TestPkgName(t *testing.T) {
	require.True(t, strings.HasSuffix(pkgName(), "/images/cmd/kvmexec"), pkgName())
}

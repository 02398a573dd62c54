package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"syscall"
	"testing"
)

func TestReserveProcs(t *testing.T) {
	old := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(old)
	reserveProcs(2)
	if got := runtime.GOMAXPROCS(0); got != 4 {
		t.Fatalf("GOMAXPROCS = %d, want 4 (2 vCPUs + 2)", got)
	}
	runtime.GOMAXPROCS(8)
	reserveProcs(1)
	if got := runtime.GOMAXPROCS(0); got != 8 {
		t.Fatalf("GOMAXPROCS = %d, want 8 kept", got)
	}
}

func TestTuneRuntime(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	rate := runtime.MemProfileRate
	defer func() { runtime.MemProfileRate = rate }()
	tuneRuntime(func(string) string { return "" })
	if runtime.MemProfileRate != 0 {
		t.Fatalf("MemProfileRate = %d, want 0", runtime.MemProfileRate)
	}
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Fatalf("GOGC = %d, want %d", got, gcPercent)
	}
	tuneRuntime(func(k string) string { return map[string]string{"GOGC": "200"}[k] })
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC = %d, want the user's setting kept", got)
	}
}

func TestHeapWithoutTHP(t *testing.T) {
	type execCall struct {
		argv0      string
		argv, envv []string
	}
	try := func(mode string, env map[string]string) *execCall {
		var got *execCall
		var environ []string
		for k, v := range env {
			environ = append(environ, k+"="+v)
		}
		heapWithoutTHP(func(k string) string { return env[k] },
			func(path string) ([]byte, error) {
				if path != thpModePath || mode == "" {
					return nil, os.ErrNotExist
				}
				return []byte(mode + "\n"), nil
			},
			func(argv0 string, argv, envv []string) error {
				got = &execCall{argv0, argv, envv}
				return syscall.ENOEXEC
			},
			[]string{"vmm", "run", "--kernel", "k"}, environ)
		return got
	}
	// THP always: vmm run again, same arguments, the runtime's setting added.
	got := try("[always] madvise never", map[string]string{"HOME": "/root"})
	if got == nil || got.argv0 != "/proc/self/exe" || !slices.Equal(got.argv, []string{"vmm", "run", "--kernel", "k"}) ||
		!slices.Equal(got.envv, []string{"HOME=/root", "GODEBUG=disablethp=1"}) {
		t.Fatalf("THP always: exec %+v", got)
	}
	// The user's GODEBUG settings stay.
	got = try("[always] madvise never", map[string]string{"GODEBUG": "gctrace=1"})
	if got == nil || !slices.Equal(got.envv, []string{"GODEBUG=gctrace=1,disablethp=1"}) {
		t.Fatalf("GODEBUG kept: exec %+v", got)
	}
	for name, c := range map[string]struct {
		mode string
		env  map[string]string
	}{
		"madvise":           {"always [madvise] never", nil},
		"never":             {"always madvise [never]", nil},
		"no THP":            {"", nil},
		"already set":       {"[always] madvise never", map[string]string{"GODEBUG": "disablethp=1"}},
		"the user's choice": {"[always] madvise never", map[string]string{"GODEBUG": "disablethp=0"}},
	} {
		if got := try(c.mode, c.env); got != nil {
			t.Errorf("%s: exec %+v, want none", name, got)
		}
	}
}

package main

import (
	"runtime"
	"runtime/debug"
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

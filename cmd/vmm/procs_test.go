package main

import (
	"runtime"
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

package main

import (
	"runtime"
	"runtime/debug"
)

// reserveProcs makes sure device goroutines (virtio queues, ioeventfds, tap
// and disk I/O) find a Go P while every vCPU thread sits in KVM_RUN: a
// thread in a system call keeps its P until the runtime's monitor takes it
// back, up to 10 ms later once the process has been quiet, and completions
// would wait that long on a host with as few CPUs as vCPUs.
func reserveProcs(vcpus int) {
	if want := vcpus + 2; runtime.GOMAXPROCS(0) < want {
		runtime.GOMAXPROCS(want)
	}
}

// gcPercent is vmm run's GOGC. Its live heap is about a megabyte (device
// state, queues); at Go's default of 100 the heap may hold 4 MiB of garbage
// before the first collection (the runtime's minimum heap goal scales with
// GOGC), most of vmm's own memory beyond guest RAM. At 25 the goal is a
// quarter of that, and each collection of so small a heap takes well under
// a millisecond.
const gcPercent = 25

// tuneRuntime applies gcPercent unless the user set GOGC, and turns off
// the runtime's memory profiling, which nothing in vmm run reads: its first
// sample allocates a 1.4 MiB bucket table. Call it first thing.
func tuneRuntime(getenv func(string) string) {
	runtime.MemProfileRate = 0
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

package main

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"strings"
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

// thpModePath says when Linux backs anonymous memory with transparent huge
// pages: "[always]", "[madvise]" or "[never]".
const thpModePath = "/sys/kernel/mm/transparent_hugepage/enabled"

// heapWithoutTHP re-executes vmm run with the Go runtime's
// GODEBUG=disablethp=1 where the host gives all anonymous memory huge pages
// ("always") and GODEBUG does not mention disablethp. There, the first
// touch of each 2 MiB of fresh Go heap makes one resident huge page, which
// the runtime believes untouched and never gives back, and khugepaged
// collapses sparse ranges into more. Sampled in the nested test host (THP
// always) while Debian's kernel booted the agent: the Go heap's mappings
// held 2 to 6 MiB in huge pages for about 2.5 MiB in use, and vmm's own
// memory peaked at 7.5 to 9.6 MiB, against 5.0 to 6.1 MiB with the
// setting. The runtime reads it from the environment at start only, hence
// the exec (before anything else has run). Guest RAM keeps its huge pages:
// vmm maps it itself and asks for them (vmm/memory.go). On failure it
// returns and vmm runs as it is.
func heapWithoutTHP(getenv func(string) string, readFile func(string) ([]byte, error),
	exec func(argv0 string, argv, envv []string) error, args, env []string) {
	godebug := getenv("GODEBUG")
	if strings.Contains(godebug, "disablethp") {
		return
	}
	mode, err := readFile(thpModePath)
	if err != nil || !bytes.Contains(mode, []byte("[always]")) {
		return
	}
	if godebug != "" {
		godebug += ","
	}
	next := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			next = append(next, kv)
		}
	}
	_ = exec("/proc/self/exe", args, append(next, "GODEBUG="+godebug+"disablethp=1"))
}

package main

import "runtime"

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

package seccomp

import "golang.org/x/sys/unix"

// Allowed ioctls: KVM's (type 0xAE) and, for the console, the terminal's
// plus FIONBIO/FIOCLEX (asm-generic values, which x86-64 uses).
const (
	kvmIoctlType = 0xAE
	fionbio      = 0x5421
	fioclex      = 0x5451
)

// VMM is the policy of a running vmm: what the Go runtime, the vCPU loops,
// device back-ends and console/report output need once the VM is built. Not
// allowed, among others: opening any path (openat, so vmm can never follow a
// guest-supplied path), executable mappings (guest memory is never
// executable in the VMM), new processes (clone without CLONE_THREAD),
// sockets, signals to other processes, and every ioctl other than KVM's,
// the terminal's and TUNSETOFFLOAD. The policy names the calling process's
// pid, so build it in the process that installs it.
func VMM() Policy {
	noExec := []Cond{{Arg: 2, Mask: unix.PROT_EXEC, Value: 0}}
	var ioctls []Cond
	ioctls = append(ioctls, Cond{Arg: 1, Mask: 0xff00, Value: kvmIoctlType << 8})
	// TUNSETOFFLOAD: virtio-net applies the offloads the guest negotiated
	// to its tap when the driver activates the device.
	for _, req := range []uint32{unix.TCGETS, unix.TCSETS, unix.TCSETSW, unix.TCSETSF, unix.TIOCGWINSZ, fionbio, fioclex, unix.TUNSETOFFLOAD} {
		ioctls = append(ioctls, Cond{Arg: 1, Mask: 0xffffffff, Value: req})
	}
	return Policy{
		Allow: []uintptr{
			// I/O on descriptors opened during setup.
			unix.SYS_READ, unix.SYS_WRITE, unix.SYS_READV, unix.SYS_WRITEV,
			unix.SYS_PREAD64, unix.SYS_PWRITE64, unix.SYS_PREADV, unix.SYS_PWRITEV,
			unix.SYS_PREADV2, unix.SYS_PWRITEV2, unix.SYS_LSEEK, unix.SYS_CLOSE,
			unix.SYS_FSTAT, unix.SYS_FCNTL, unix.SYS_FSYNC, unix.SYS_FDATASYNC,
			unix.SYS_FTRUNCATE, unix.SYS_FALLOCATE,
			// Polling and eventfds (ioeventfd/irqfd back-ends, the netpoller).
			unix.SYS_EPOLL_CREATE1, unix.SYS_EPOLL_CTL, unix.SYS_EPOLL_WAIT, unix.SYS_EPOLL_PWAIT,
			unix.SYS_EPOLL_PWAIT2, unix.SYS_EVENTFD2, unix.SYS_PPOLL, unix.SYS_PSELECT6, unix.SYS_PIPE2,
			// Hyper-V synthetic timers (timerfds in the netpoller).
			unix.SYS_TIMERFD_CREATE, unix.SYS_TIMERFD_SETTIME,
			// The Go runtime: memory, threads, signals, time.
			unix.SYS_MUNMAP, unix.SYS_MADVISE, unix.SYS_MREMAP, unix.SYS_MINCORE,
			unix.SYS_FUTEX, unix.SYS_SCHED_YIELD, unix.SYS_SCHED_GETAFFINITY,
			unix.SYS_NANOSLEEP, unix.SYS_CLOCK_NANOSLEEP, unix.SYS_CLOCK_GETTIME, unix.SYS_GETTIMEOFDAY,
			unix.SYS_RT_SIGACTION, unix.SYS_RT_SIGPROCMASK, unix.SYS_RT_SIGRETURN, unix.SYS_SIGALTSTACK,
			unix.SYS_GETPID, unix.SYS_GETTID, unix.SYS_TGKILL, unix.SYS_TKILL,
			unix.SYS_GETRANDOM, unix.SYS_RESTART_SYSCALL, unix.SYS_GETRLIMIT, unix.SYS_PRLIMIT64,
			unix.SYS_EXIT, unix.SYS_EXIT_GROUP,
			// New threads of a cgo-linked build (glibc's pthread_create); the
			// static vmm binary does not need them.
			unix.SYS_RSEQ, unix.SYS_SET_ROBUST_LIST,
		},
		AllowIf: map[uintptr][]Cond{
			unix.SYS_MMAP:     noExec,
			unix.SYS_MPROTECT: noExec,
			unix.SYS_IOCTL:    ioctls,
			// Threads only: CLONE_THREAD set.
			unix.SYS_CLONE: {{Arg: 0, Mask: unix.CLONE_THREAD, Value: unix.CLONE_THREAD}},
			// Only to itself: the console's Ctrl-A x sends SIGTERM to vmm.
			unix.SYS_KILL: {{Arg: 0, Mask: 0xffffffff, Value: uint32(unix.Getpid())}},
		},
		// clone3 passes its flags in memory a filter cannot read: ENOSYS makes
		// callers fall back to clone, whose flags the filter checks.
		Errnos: map[uintptr]unix.Errno{unix.SYS_CLONE3: unix.ENOSYS},
		Errno:  unix.EPERM,
	}
}

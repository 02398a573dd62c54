// Package seccomp locks a process down to a list of system calls with a
// seccomp BPF filter built here in pure Go (no libseccomp, no cgo). The
// filter is installed for every thread of the process at once
// (SECCOMP_FILTER_FLAG_TSYNC) and cannot be removed.
package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrTooLarge means the policy does not fit a BPF program.
var ErrTooLarge = errors.New("seccomp program too large")

// Offsets into struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16 // args[i] at offArgs+8*i; the low 32 bits come first on x86-64
)

// x32ABIBit marks x32 system call numbers, which share the x86-64 arch value.
const x32ABIBit = 0x40000000

// maxInsns is the kernel's BPF_MAXINSNS.
const maxInsns = 4096

// Cond allows a call when (low 32 bits of argument Arg) & Mask == Value.
type Cond struct {
	Arg   int
	Mask  uint32
	Value uint32
}

// Policy is an allow list. A call not allowed fails with Errno (EPERM when
// zero) unless Errnos names another errno for it; a call from another
// architecture's ABI kills the process.
type Policy struct {
	// Allow are system calls allowed with any arguments.
	Allow []uintptr
	// AllowIf are system calls allowed when any of their conditions holds.
	AllowIf map[uintptr][]Cond
	// Errnos overrides the errno of particular denied calls (e.g. ENOSYS for
	// clone3, so the Go runtime and libraries fall back to clone).
	Errnos map[uintptr]unix.Errno
	Errno  unix.Errno
}

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

func ret(k uint32) unix.SockFilter { return stmt(unix.BPF_RET|unix.BPF_K, k) }

func errnoRet(e unix.Errno) unix.SockFilter {
	return ret(unix.SECCOMP_RET_ERRNO | uint32(e)&unix.SECCOMP_RET_DATA)
}

// Program compiles the policy. The program is a linear scan: every allowed
// call is a compare followed by its own "allow" return, so no jump is longer
// than one conditional block.
func (p Policy) Program() ([]unix.SockFilter, error) {
	deny := p.Errno
	if deny == 0 {
		deny = unix.EPERM
	}
	ldNr := stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offNr)
	prog := []unix.SockFilter{
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, offArch),
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, unix.AUDIT_ARCH_X86_64, 1, 0),
		ret(unix.SECCOMP_RET_KILL_PROCESS),
		ldNr,
		jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, x32ABIBit, 0, 1),
		errnoRet(deny),
	}
	allow := slices.Clone(p.Allow)
	slices.Sort(allow)
	for _, nr := range slices.Compact(allow) {
		prog = append(prog,
			jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, uint32(nr), 0, 1),
			ret(unix.SECCOMP_RET_ALLOW))
	}
	for _, nr := range sortedKeys(p.AllowIf) {
		conds := p.AllowIf[nr]
		var block []unix.SockFilter
		for _, c := range conds {
			if c.Arg < 0 || c.Arg > 5 {
				return nil, fmt.Errorf("seccomp: syscall %d: argument %d out of range", nr, c.Arg)
			}
			block = append(block,
				stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, uint32(offArgs+8*c.Arg)),
				stmt(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, c.Mask),
				jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, c.Value, 0, 1),
				ret(unix.SECCOMP_RET_ALLOW))
		}
		block = append(block, errnoFor(p, nr, deny))
		if len(block) > 255 {
			return nil, fmt.Errorf("%w: syscall %d has %d conditions", ErrTooLarge, nr, len(conds))
		}
		prog = append(prog, jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, uint32(nr), 0, uint8(len(block))))
		prog = append(prog, block...)
	}
	for _, nr := range sortedKeys(p.Errnos) {
		if _, ok := p.AllowIf[nr]; ok {
			continue // its block already returns this errno
		}
		prog = append(prog,
			jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, uint32(nr), 0, 1),
			errnoRet(p.Errnos[nr]))
	}
	prog = append(prog, errnoRet(deny))
	if len(prog) > maxInsns {
		return nil, fmt.Errorf("%w: %d instructions", ErrTooLarge, len(prog))
	}
	return prog, nil
}

func errnoFor(p Policy, nr uintptr, deny unix.Errno) unix.SockFilter {
	if e, ok := p.Errnos[nr]; ok {
		return errnoRet(e)
	}
	return errnoRet(deny)
}

func sortedKeys[V any](m map[uintptr]V) []uintptr {
	keys := make([]uintptr, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Install sets no_new_privs and installs prog for every thread of the
// process. It cannot be undone.
func Install(prog []unix.SockFilter) error {
	if runtime.GOARCH != "amd64" {
		return fmt.Errorf("seccomp: the filter is written for amd64, not %s", runtime.GOARCH)
	}
	if len(prog) == 0 || len(prog) > maxInsns {
		return fmt.Errorf("%w: %d instructions", ErrTooLarge, len(prog))
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp: set no_new_privs: %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("seccomp: install filter: %w", errno)
	}
	if r != 0 {
		// With TSYNC, a positive result names a thread that could not be synchronised.
		return fmt.Errorf("seccomp: thread %d could not take the filter", r)
	}
	return nil
}

package seccomp

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// eval runs prog over a seccomp_data the way the kernel does, for the few
// instructions Program emits.
func eval(t *testing.T, prog []unix.SockFilter, arch uint32, nr uintptr, args ...uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.LittleEndian.PutUint32(data[offNr:], uint32(nr))
	binary.LittleEndian.PutUint32(data[offArch:], arch)
	for i, a := range args {
		binary.LittleEndian.PutUint64(data[offArgs+8*i:], a)
	}
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			acc = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			acc &= in.K
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			if acc == in.K {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			if acc >= in.K {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("unexpected instruction %#x at %d", in.Code, pc)
		}
	}
	t.Fatal("program fell off its end")
	return 0
}

const (
	allow = unix.SECCOMP_RET_ALLOW
	eperm = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
)

func TestVMMPolicyDecisions(t *testing.T) {
	prog, err := VMM().Program()
	require.NoError(t, err)
	x86 := uint32(unix.AUDIT_ARCH_X86_64)
	cases := []struct {
		name string
		nr   uintptr
		args []uint64
		want uint32
	}{
		{"write", unix.SYS_WRITE, nil, allow},
		{"futex", unix.SYS_FUTEX, nil, allow},
		{"timerfd_create", unix.SYS_TIMERFD_CREATE, nil, allow},
		{"timerfd_settime", unix.SYS_TIMERFD_SETTIME, nil, allow},
		{"KVM_RUN", unix.SYS_IOCTL, []uint64{5, 0xae80}, allow},
		{"KVM_IRQ_LINE", unix.SYS_IOCTL, []uint64{5, 0x4008ae61}, allow},
		{"TCSETS", unix.SYS_IOCTL, []uint64{0, unix.TCSETS}, allow},
		{"TIOCSTI", unix.SYS_IOCTL, []uint64{0, unix.TIOCSTI}, eperm},
		{"TUNSETIFF", unix.SYS_IOCTL, []uint64{7, unix.TUNSETIFF}, eperm},
		{"kill self", unix.SYS_KILL, []uint64{uint64(unix.Getpid()), uint64(unix.SIGTERM)}, allow},
		{"kill other", unix.SYS_KILL, []uint64{1, uint64(unix.SIGTERM)}, eperm},
		{"ioctl KVM type in the high half only", unix.SYS_IOCTL, []uint64{5, 0xae00 << 32}, eperm},
		{"mmap rw", unix.SYS_MMAP, []uint64{0, 4096, unix.PROT_READ | unix.PROT_WRITE}, allow},
		{"mmap exec", unix.SYS_MMAP, []uint64{0, 4096, unix.PROT_READ | unix.PROT_EXEC}, eperm},
		{"mprotect exec", unix.SYS_MPROTECT, []uint64{0, 4096, unix.PROT_EXEC}, eperm},
		{"thread", unix.SYS_CLONE, []uint64{unix.CLONE_VM | unix.CLONE_THREAD | unix.CLONE_SIGHAND}, allow},
		{"fork", unix.SYS_CLONE, []uint64{uint64(unix.SIGCHLD)}, eperm},
		{"clone3", unix.SYS_CLONE3, nil, unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{"openat", unix.SYS_OPENAT, nil, eperm},
		{"execve", unix.SYS_EXECVE, nil, eperm},
		{"socket", unix.SYS_SOCKET, nil, eperm},
		{"x32 write", x32ABIBit | unix.SYS_WRITE, nil, eperm},
	}
	for _, c := range cases {
		require.Equal(t, c.want, eval(t, prog, x86, c.nr, c.args...), c.name)
	}
	require.Equal(t, uint32(unix.SECCOMP_RET_KILL_PROCESS), eval(t, prog, 0x40000003 /* i386 */, unix.SYS_WRITE), "other ABI")
}

func TestProgramRejectsBadPolicy(t *testing.T) {
	_, err := Policy{AllowIf: map[uintptr][]Cond{1: {{Arg: 6}}}}.Program()
	require.Error(t, err)
	many := make([]Cond, 100)
	_, err = Policy{AllowIf: map[uintptr][]Cond{1: many}}.Program()
	require.ErrorIs(t, err, ErrTooLarge)
	require.ErrorIs(t, Install(nil), ErrTooLarge)
}

const childEnv = "VMM_SECCOMP_TEST_CHILD"

// TestMain lets TestFilterInstalled re-execute this binary as the process to
// lock down: a filter cannot be removed, so it never runs in the test process.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

// child installs the VMM policy, then works the Go runtime (new threads,
// GC, timers) and reports what the forbidden calls returned.
func child() int {
	prog, err := VMM().Program()
	if err == nil {
		err = Install(prog)
	}
	if err != nil {
		fmt.Println("install:", err)
		return 1
	}
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // forces new OS threads (clone) under the filter
			buf := make([][]byte, 0, 64)
			for j := 0; j < 64; j++ {
				buf = append(buf, make([]byte, 256<<10))
			}
			runtime.GC()
			_ = buf
		}()
	}
	wg.Wait()
	_, err = os.Open("/etc/hostname")
	fmt.Println("open:", errnoName(err))
	_, err = unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_ANON|unix.MAP_PRIVATE)
	fmt.Println("mmap-exec:", errnoName(err))
	_, err = unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	fmt.Println("mmap-rw:", errnoName(err))
	_, err = exec.Command("/bin/true").Output()
	fmt.Println("exec:", errnoName(err))
	_, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	fmt.Println("socket:", errnoName(err))
	fmt.Println("kill-parent:", errnoName(unix.Kill(os.Getppid(), 0)))
	fmt.Println("kill-self:", errnoName(unix.Kill(os.Getpid(), 0)))
	return 0
}

func errnoName(err error) string {
	if err == nil {
		return "ok"
	}
	for _, e := range []unix.Errno{unix.EPERM, unix.ENOSYS} {
		if strings.Contains(err.Error(), e.Error()) {
			return unix.ErrnoName(e)
		}
	}
	return err.Error()
}

func TestFilterInstalled(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "open: EPERM\nmmap-exec: EPERM\nmmap-rw: ok\nexec: EPERM\nsocket: EPERM\nkill-parent: EPERM\nkill-self: ok\n", string(out))
}

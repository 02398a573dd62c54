package ahci

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// kicker wakes a port's goroutine through an eventfd that the goroutine
// reads through the runtime's poller, the way an ioeventfd wakes a virtio
// queue's. A channel send would not do on the vCPU thread that writes
// PxCI: it queues the port goroutine on the vCPU thread's own P (as the
// next to run there), which then sits in KVM_RUN; another thread must
// steal it, and the runtime waits for a running P before stealing its next
// goroutine. On a host with as few CPUs as vCPUs the vCPU thread keeps the
// CPU meanwhile, and in the nested test host (one CPU) the command waited
// about 2 ms to be fetched. A readable eventfd instead wakes the thread
// parked in the poller, which runs the goroutine on an idle P at once.
type kicker struct {
	f *os.File
}

func newKicker() (*kicker, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	// Non-blocking, so os.File uses the poller and Close wakes wait.
	return &kicker{f: os.NewFile(uintptr(fd), "ahci-port-kick")}, nil
}

// kick makes the next wait return; kicks before it merge into one. After
// close it does nothing.
func (k *kicker) kick() {
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	// The counter cannot reach its limit (2^64-2) by adding ones; the
	// only failure is a closed kicker.
	_, _ = k.f.Write(one[:])
}

// wait blocks until a kick, and returns false once the kicker is closed.
func (k *kicker) wait() bool {
	var buf [8]byte
	_, err := k.f.Read(buf[:])
	return err == nil
}

func (k *kicker) close() { _ = k.f.Close() }

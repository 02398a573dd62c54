package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Probes for the Hyper-V checks that need the running guest: timed MSR
// reads through the msr driver and a TLB-shootdown workload over two CPUs.

// MSRs the msr-cost check reads on CPU 0, from cheapest to dearest under a
// hypervisor: FS_BASE is passed through to the guest (no exit on VMX or
// SVM), APIC_BASE exits to the host kernel's KVM, and TIME_REF_COUNT exits
// to wherever Hyper-V is emulated (vmm in userspace, KVM in-kernel for QEMU).
var msrProbes = []struct {
	name string
	msr  int64
}{
	{"noexit", 0xc0000100},
	{"kvmexit", 0x1b},
	{"hvmsr", 0x40000020},
}

// batchStats are per-read costs over several batches: the median, and the
// fastest and slowest batch (the spread says how noisy the machine was).
type batchStats struct {
	median, lo, hi float64
	reads          int
}

func (b batchStats) String() string {
	return fmt.Sprintf("%.1f (%.1f-%.1f, %d reads)", b.median, b.lo, b.hi, b.reads)
}

// timeBatches runs batches batches of up to n calls of f, each batch also
// bounded by budget, and returns the per-call cost statistics in ns.
func timeBatches(batches, n int, budget time.Duration, f func() error) (batchStats, error) {
	per := make([]float64, 0, batches)
	total := 0
	for range batches {
		start := time.Now()
		i := 0
		for i < n {
			if err := f(); err != nil {
				return batchStats{}, err
			}
			i++
			if i%16 == 0 && time.Since(start) > budget {
				break
			}
		}
		per = append(per, float64(time.Since(start).Nanoseconds())/float64(i))
		total += i
	}
	slices.Sort(per)
	return batchStats{median: per[len(per)/2], lo: per[0], hi: per[len(per)-1], reads: total}, nil
}

// pinToCPU locks the calling goroutine to its thread and that thread to cpu;
// the caller must runtime.UnlockOSThread when done.
func pinToCPU(cpu int) error {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return nil
}

// msrCosts times reads of each msrProbes MSR through /dev/cpu/0/msr, on
// CPU 0 so that the driver reads it locally rather than by cross-call.
func msrCosts() (map[string]batchStats, error) {
	defer runtime.UnlockOSThread()
	if err := pinToCPU(0); err != nil {
		return nil, err
	}
	f, err := os.Open("/dev/cpu/0/msr")
	if err != nil {
		return nil, fmt.Errorf("msr driver (module msr): %w", err)
	}
	defer f.Close()
	out := map[string]batchStats{}
	var buf [8]byte
	for _, p := range msrProbes {
		// An MSR the platform lacks (the Hyper-V ones without Hyper-V)
		// fails with EIO at once; it is left out.
		st, err := timeBatches(7, 20000, 150*time.Millisecond, func() error {
			_, err := unix.Pread(int(f.Fd()), buf[:], p.msr)
			return err
		})
		if err == nil {
			out[p.name] = st
		}
	}
	return out, nil
}

// tlbShootdowns makes the kernel flush another CPU's TLB rounds times: a
// thread of this process spins on CPU 1 (so the address space is live
// there) while CPU 0 maps, touches and unmaps a page. With Hyper-V's
// remote TLB flush recommended, Linux does each flush by hypercall.
func tlbShootdowns(rounds int) error {
	var stop, ready atomic.Bool
	errc := make(chan error, 1)
	go func() {
		defer runtime.UnlockOSThread()
		if err := pinToCPU(1); err != nil {
			ready.Store(true)
			errc <- err
			return
		}
		ready.Store(true)
		for !stop.Load() {
		}
		errc <- nil
	}()
	for !ready.Load() {
		runtime.Gosched()
	}
	err := func() error {
		defer runtime.UnlockOSThread()
		if err := pinToCPU(0); err != nil {
			return err
		}
		for range rounds {
			b, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			if err != nil {
				return fmt.Errorf("mmap: %w", err)
			}
			b[0] = 1
			if err := unix.Munmap(b); err != nil {
				return fmt.Errorf("munmap: %w", err)
			}
		}
		return nil
	}()
	stop.Store(true)
	if perr := <-errc; perr != nil && err == nil {
		err = perr
	}
	return err
}

package hyperv

import (
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// chanHost is a Host that counts interrupts and, from the count wake on,
// sends each to a channel: the benchmarks' guest, woken by its interrupt
// as a vCPU thread is.
type chanHost struct {
	fakeHost
	n    atomic.Int64
	wake int64
	irq  chan uint8
}

func (h *chanHost) Interrupt(_ int, vec uint8) error {
	if h.n.Add(1) >= h.wake {
		select {
		case h.irq <- vec:
		default: // the guest has not taken the last one yet
		}
	}
	return nil
}

// benchTSCHz measures the host TSC's rate over 20 ms, as vmm's clock runs
// on it.
func benchTSCHz(b *testing.B) uint64 {
	t0, c0 := time.Now(), rdtsc()
	time.Sleep(20 * time.Millisecond)
	hz := float64(rdtsc()-c0) / time.Since(t0).Seconds()
	if hz < 1e8 {
		b.Skipf("host TSC at %.0f Hz: too slow for the reference clock", hz)
	}
	return uint64(hz)
}

// benchPartition is a one-vCPU partition on the real clock: the host TSC,
// host timers through fdTimers.
func benchPartition(b *testing.B) (*Partition, *chanHost) {
	b.Helper()
	hz := benchTSCHz(b)
	clock := &TSCClock{Params: NewTSCParams(hz, rdtsc())}
	b.Cleanup(func() { _ = clock.Close() })
	f, err := ParseFeatures("all")
	if err != nil {
		b.Fatal(err)
	}
	host := &chanHost{irq: make(chan uint8, 1)}
	p, err := New(Config{Features: f, CPUs: 1, Memory: &fakeMem{b: make([]byte, 1<<20)}, Host: host, Clock: clock,
		TSC: clock.Params, TSCHz: hz})
	if err != nil {
		b.Fatal(err)
	}
	return p, host
}

func benchWrite(b *testing.B, p *Partition, msr uint32, v uint64) {
	if !p.WriteMSR(0, msr, v) {
		b.Fatalf("wrmsr %s <- %#x refused", msrName(msr), v)
	}
}

// waitIRQ waits for the next interrupt sent (go test's -timeout bounds it).
func waitIRQ(h *chanHost) { <-h.irq }

// cpuNS is the process's user and system CPU time.
func cpuNS(b *testing.B) int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkSTimerOneShot is vmm's side of a Linux guest's tick on direct
// synthetic timers: the vCPU thread handles a WRMSR of STIMER0_COUNT (a
// one-shot 10 µs ahead), the host timer fires and the interrupt is raised.
// cpu-ns/op is the process CPU that costs, which two levels down comes out
// of the guest's own time.
func BenchmarkSTimerOneShot(b *testing.B) {
	p, h := benchPartition(b)
	benchWrite(b, p, MSRSTimer0Config, stimerDirect|0xec<<stimerVectorShft|stimerAutoEnable)
	cpu := cpuNS(b)
	b.ResetTimer()
	for range b.N {
		benchWrite(b, p, MSRSTimer0Config+1, p.clock.Now()+100)
		waitIRQ(h)
	}
	b.ReportMetric(float64(cpuNS(b)-cpu)/float64(b.N), "cpu-ns/op")
}

// BenchmarkSTimerPeriodic is a periodic direct timer at the shortest
// period vmm allows (100 µs): ns/op above the period means expiries that
// came late (a periodic timer keeps its phase and skips them), cpu-ns/op is
// what each expiry costs the host.
func BenchmarkSTimerPeriodic(b *testing.B) {
	p, h := benchPartition(b)
	benchWrite(b, p, MSRSTimer0Config, stimerDirect|0xec<<stimerVectorShft|stimerPeriodic|stimerAutoEnable)
	h.wake = int64(b.N)
	cpu := cpuNS(b)
	b.ResetTimer()
	benchWrite(b, p, MSRSTimer0Config+1, minPeriod)
	waitIRQ(h)
	b.StopTimer()
	benchWrite(b, p, MSRSTimer0Config, 0)
	b.ReportMetric(float64(cpuNS(b)-cpu)/float64(b.N), "cpu-ns/op")
}

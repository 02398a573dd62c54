package hyperv

import (
	"testing"

	"github.com/vmmdev/vmm/vmm/kvm"
)

// syscallHost counts the calls that are system calls on the real host
// (vmm.hvMachine): Interrupt is KVM_SIGNAL_MSI, GuestTSC KVM_GET_MSRS, Kick
// a tgkill (and the signal it delivers), SetKernelSINT KVM_SET_MSRS; the
// LAPIC's get and set are KVM_GET_LAPIC and KVM_SET_LAPIC, a clock timer
// arm or stop a timerfd_settime.
// Its LAPIC takes each interrupt into IRR; accept moves them to ISR, as
// the guest's next entry does.
type syscallHost struct {
	fakeHost
	tsc   uint64
	n     map[string]int
	lapic fakeLAPIC
}

func (h *syscallHost) Interrupt(_ int, vec uint8) error {
	h.n["signal-msi"]++
	h.lapic.set(lapicIRR, vec, true)
	return nil
}

func (h *syscallHost) Kick(int)                     { h.n["tgkill"]++ }
func (h *syscallHost) GuestTSC(int) (uint64, error) { h.n["get-msrs"]++; return h.tsc, nil }

func (h *syscallHost) GetLAPIC() (kvm.LAPICState, error) {
	h.n["get-lapic"]++
	return h.lapic.GetLAPIC()
}

func (h *syscallHost) SetLAPIC(s kvm.LAPICState) error {
	h.n["set-lapic"]++
	return h.lapic.SetLAPIC(s)
}

// accept has the LAPIC deliver vec: out of IRR and, unless KVM's SynIC
// auto-EOIs it, into ISR.
func (h *syscallHost) accept(vec uint8, autoEOI bool) {
	h.lapic.set(lapicIRR, vec, false)
	h.lapic.set(lapicISR, vec, !autoEOI)
}

// countingClock is a fakeClock that counts timer arms and stops.
type countingClock struct {
	fakeClock
	n map[string]int
}

func (c *countingClock) AfterFunc(d uint64, f func(uint64), arg uint64) Timer {
	c.n["timerfd-settime"]++
	return countingTimer{c.fakeClock.AfterFunc(d, f, arg), c.n}
}

type countingTimer struct {
	Timer
	n map[string]int
}

func (t countingTimer) Stop() bool { t.n["timerfd-settime"]++; return t.Timer.Stop() }

// kernelSyscallHost adds KVM's SynIC (KernelAutoEOI).
type kernelSyscallHost struct{ *syscallHost }

func (h kernelSyscallHost) SetKernelSINT(int, int, uint64) error { h.n["set-msrs"]++; return nil }

// BenchmarkSTimerMessage is vmm's side of the exit benchmark's stimer-msg
// and stimer-aeoi rows: the guest writes STIMER0_COUNT with a time in the
// past (message mode), vmm writes the message and raises the SINT, the
// guest takes the message. Besides ns/op and allocs/op it reports the
// system calls each message costs on the real host (see syscallHost), with
// auto-EOI done by KVM's LAPIC ("kernel") or by vmm ("vmm").
func BenchmarkSTimerMessage(b *testing.B) {
	for _, c := range []struct {
		name         string
		aeoi, kernel bool
	}{{"eoi", false, false}, {"aeoi-kernel", true, true}, {"aeoi-vmm", true, false}} {
		b.Run(c.name, func(b *testing.B) {
			n := map[string]int{}
			sh := &syscallHost{n: n, tsc: 1e9 + 250*5000}
			var host Host = sh
			if c.kernel {
				host = kernelSyscallHost{sh}
			}
			clock := &countingClock{fakeClock: fakeClock{now: 1000}, n: n}
			f, err := ParseFeatures("all")
			if err != nil {
				b.Fatal(err)
			}
			mem := &fakeMem{b: make([]byte, 1<<20)}
			p, err := New(Config{Features: f, CPUs: 1, Memory: mem, Host: host, Clock: clock,
				TSC: NewTSCParams(testTSCHz, 1e9), TSCHz: testTSCHz})
			if err != nil {
				b.Fatal(err)
			}
			const simp = 0x40000
			sint := uint64(0x43)
			if c.aeoi {
				sint |= sintAutoEOI
			}
			for _, w := range [][2]uint64{{MSRSControl, 1}, {MSRSIMP, simp | 1}, {MSRSINT0 + 2, sint},
				{MSRSTimer0Config, 2<<stimerSintShift | stimerAutoEnable}} {
				benchWrite(b, p, uint32(w[0]), w[1])
			}
			slot := mem.b[simp+2*msgSlotSize:]
			clear(n)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				benchWrite(b, p, MSRSTimer0Config+1, 1)
				if p.NeedsProcess(0) {
					if err := p.Process(0, sh); err != nil {
						b.Fatal(err)
					}
				}
				// The guest takes the interrupt (EOI'd by itself, by KVM,
				// or left in service for Process at the next exit) and
				// the message.
				sh.accept(0x43, !c.aeoi || c.kernel)
				atomicStore32(slot, msgTypeNone)
			}
			b.StopTimer()
			for k, v := range n {
				b.ReportMetric(float64(v)/float64(b.N), k+"/op")
			}
		})
	}
}

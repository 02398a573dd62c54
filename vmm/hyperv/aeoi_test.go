package hyperv

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/vmm/kvm"
)

type fakeLAPIC struct {
	st   kvm.LAPICState
	sets int
}

func (l *fakeLAPIC) GetLAPIC() (kvm.LAPICState, error) { return l.st, nil }
func (l *fakeLAPIC) SetLAPIC(s kvm.LAPICState) error   { l.st = s; l.sets++; return nil }

func (l *fakeLAPIC) set(base int, vec uint8, on bool) {
	off := base + int(vec/32)*16
	r := l.st.Reg(off)
	if on {
		r |= 1 << (vec % 32)
	} else {
		r &^= 1 << (vec % 32)
	}
	l.st.SetReg(off, r)
}

func (l *fakeLAPIC) has(base int, vec uint8) bool { return lapicBit(&l.st, base, vec) }

func TestAutoEOIClearsISRAfterAcceptance(t *testing.T) {
	tp := newTestPartition(t, "all", 2)
	const simp = 0x40000
	tp.mustWrite(t, 1, MSRSControl, 1)
	tp.mustWrite(t, 1, MSRSIMP, simp|1)
	tp.mustWrite(t, 1, MSRSINT0+2, sintAutoEOI|0x93)
	tp.mustWrite(t, 1, MSRSINT0+3, 0x94) // no auto-EOI
	tp.mustWrite(t, 1, MSRSTimer0Config+1, 100)
	tp.mustWrite(t, 1, MSRSTimer0Config, timerConfig(t, true, false, false, false, 0, 2))
	require.False(t, tp.NeedsProcess(1))
	tp.clock.Advance(100)
	require.Equal(t, []irq{{1, 0x93}}, tp.host.takeIRQs())
	require.True(t, tp.NeedsProcess(1))
	require.False(t, tp.NeedsProcess(0))
	require.Equal(t, []int{1}, tp.host.kicks)

	// Not yet accepted (still in IRR): nothing changes, a retry is armed.
	l := &fakeLAPIC{}
	l.set(lapicIRR, 0x93, true)
	l.set(lapicISR, 0x31, true) // someone else's vector in service
	require.NoError(t, tp.Process(1, l))
	require.Zero(t, l.sets)
	require.False(t, tp.NeedsProcess(1))
	tp.clock.Advance(aeoiRetry)
	require.True(t, tp.NeedsProcess(1), "retry kick")
	require.Equal(t, []int{1, 1}, tp.host.kicks)

	// Accepted: the ISR bit goes, others stay.
	l.set(lapicIRR, 0x93, false)
	l.set(lapicISR, 0x93, true)
	require.NoError(t, tp.Process(1, l))
	require.Equal(t, 1, l.sets)
	require.False(t, l.has(lapicISR, 0x93))
	require.True(t, l.has(lapicISR, 0x31))
	tp.clock.Advance(aeoiRetry * 10)
	require.False(t, tp.NeedsProcess(1), "nothing left to do")
	require.Equal(t, uint64(1), tp.Summary().VPs[1].AutoEOIs)

	// A SINT without auto-EOI needs no help.
	le := tp.mem.b[simp+2*msgSlotSize:]
	le[0], le[1], le[2], le[3] = 0, 0, 0, 0
	tp.mustWrite(t, 1, MSRSTimer0Config, timerConfig(t, true, false, false, false, 0, 3))
	tp.mustWrite(t, 1, MSRSTimer0Config+1, 1) // in the past: at once
	require.Equal(t, []irq{{1, 0x94}}, tp.host.takeIRQs())
	require.False(t, tp.NeedsProcess(1))
}

func TestClearAccepted(t *testing.T) {
	l := &fakeLAPIC{}
	pending := [4]uint64{}
	mark := func(v uint8) { pending[v/64] |= 1 << (v % 64) }
	mark(0x40) // in ISR and IRR again: clear ISR, keep waiting
	mark(0x41) // neither: the guest EOI'd it itself; drop
	mark(0xfe) // in ISR only: clear, done
	l.set(lapicISR, 0x40, true)
	l.set(lapicIRR, 0x40, true)
	l.set(lapicISR, 0xfe, true)
	left, changed := clearAccepted(&l.st, &pending)
	require.True(t, left)
	require.True(t, changed)
	require.False(t, l.has(lapicISR, 0x40))
	require.False(t, l.has(lapicISR, 0xfe))
	require.True(t, l.has(lapicIRR, 0x40))
	require.Equal(t, [4]uint64{0, 1 << 0, 0, 0}, pending)
}

// kernelHost is a host whose in-kernel SynIC takes the SINTs
// (KernelAutoEOI), or refuses them with err.
type kernelHost struct {
	*fakeHost
	err   error
	sints []kernelSINT
}

type kernelSINT struct {
	vcpu, sint int
	value      uint64
}

func (h *kernelHost) SetKernelSINT(vcpu, sint int, value uint64) error {
	if h.err != nil {
		return h.err
	}
	h.sints = append(h.sints, kernelSINT{vcpu, sint, value})
	return nil
}

func newKernelPartition(t *testing.T, h *kernelHost) testPart {
	return newHostPartition(t, "all", h.fakeHost, h)
}

// newHostPartition makes a two-VP partition with features on host, which
// wraps fh (the fake the test inspects).
func newHostPartition(t *testing.T, features string, fh *fakeHost, host Host) testPart {
	t.Helper()
	f, err := ParseFeatures(features)
	require.NoError(t, err)
	tp := testPart{mem: &fakeMem{b: make([]byte, 1<<20)}, host: fh, clock: &fakeClock{now: 1000}}
	tp.Partition, err = New(Config{Features: f, CPUs: 2, Memory: tp.mem, Host: host, Clock: tp.clock,
		TSC: NewTSCParams(testTSCHz, 1e9), TSCHz: testTSCHz})
	require.NoError(t, err)
	return tp
}

func TestAutoEOIInKernel(t *testing.T) {
	h := &kernelHost{fakeHost: &fakeHost{}}
	tp := newKernelPartition(t, h)
	const simp = 0x40000
	tp.mustWrite(t, 1, MSRSControl, 1)
	tp.mustWrite(t, 1, MSRSIMP, simp|1)
	tp.mustWrite(t, 1, MSRSINT0+3, 0x94)
	require.Empty(t, h.sints, "no auto-EOI SINT yet: KVM's SynIC stays off")
	tp.mustWrite(t, 1, MSRSINT0+2, sintAutoEOI|0x93)
	tp.mustWrite(t, 1, MSRSINT0+3, 0x95)
	// KVM's copy has the auto-EOI vector (KVM ignores masked SINTs, so
	// that one stays as written) and no other.
	tp.mustWrite(t, 1, MSRSINT0+4, sintMasked|sintAutoEOI|0x96)
	require.Equal(t, []kernelSINT{{1, 2, sintAutoEOI | 0x93}, {1, 3, sintMasked | 0x95},
		{1, 4, sintMasked | sintAutoEOI | 0x96}}, h.sints)
	require.True(t, tp.Summary().VPs[1].KernelAutoEOI)
	require.False(t, tp.Summary().VPs[0].KernelAutoEOI)

	// A message through the auto-EOI SINT is one interrupt: no kick, no
	// work on the vCPU thread, no retry timer.
	tp.mustWrite(t, 1, MSRSTimer0Config, timerConfig(t, false, false, true, false, 0, 2))
	tp.mustWrite(t, 1, MSRSTimer0Config+1, 1)
	require.Equal(t, []irq{{1, 0x93}}, tp.host.takeIRQs())
	require.Empty(t, tp.host.kicks)
	require.False(t, tp.NeedsProcess(1))
	require.Zero(t, tp.clock.armed())
	vp := tp.Summary().VPs[1]
	require.Equal(t, uint64(1), vp.AutoEOIs)
	require.Equal(t, uint64(1), vp.SINTsRaised)
}

func TestAutoEOIFallsBackToVMM(t *testing.T) {
	h := &kernelHost{fakeHost: &fakeHost{}, err: errors.New("no SynIC in this KVM")}
	tp := newKernelPartition(t, h)
	tp.mustWrite(t, 0, MSRSControl, 1)
	tp.mustWrite(t, 0, MSRSIMP, 0x40000|1)
	tp.mustWrite(t, 0, MSRSINT0+2, sintAutoEOI|0x93)
	h.err = nil
	tp.mustWrite(t, 0, MSRSINT0+3, sintAutoEOI|0x94)
	require.Empty(t, h.sints, "refused once: vmm does the auto-EOI from then on")
	tp.mustWrite(t, 0, MSRSTimer0Config, timerConfig(t, false, false, true, false, 0, 2))
	tp.mustWrite(t, 0, MSRSTimer0Config+1, 1)
	require.Equal(t, []irq{{0, 0x93}}, tp.host.takeIRQs())
	require.Equal(t, []int{0}, tp.host.kicks)
	require.True(t, tp.NeedsProcess(0))
	require.False(t, tp.Summary().VPs[0].KernelAutoEOI)
}

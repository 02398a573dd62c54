package hyperv

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestKernelTimersFeatures(t *testing.T) {
	f, err := ParseFeatures("all,kernel-timers")
	require.NoError(t, err)
	require.True(t, f.Kernel())
	require.Contains(t, f.String(), ",kernel-timers")
	g, err := ParseFeatures(f.String())
	require.NoError(t, err)
	require.Equal(t, f, g, "String round-trips")

	k := f.KernelMSRs()
	for m := uint32(MSRSTimer0Config); m <= MSRSTimer3Count; m++ {
		require.Contains(t, k, m, msrName(m))
	}
	require.Contains(t, k, uint32(MSRTimeRefCount))
	require.Contains(t, k, uint32(MSRReferenceTSC))
	for _, m := range []uint32{MSRSControl, MSRSIMP, MSRSIEFP, MSREOM, MSRSINT0 + 2, MSRVPAssistPage, MSRHypercall} {
		require.NotContains(t, k, m, "%s stays vmm's", msrName(m))
	}
	bm := f.FilterBitmap()
	bit := func(m uint32) bool { i := m - FilterBase; return bm[i/8]&(1<<(i%8)) != 0 }
	require.True(t, bit(MSRSTimer0Config+5))
	require.True(t, bit(MSRTimeRefCount))
	require.False(t, bit(MSRSIMP))

	f, err = ParseFeatures("all,kernel-timers,tsc-page=off")
	require.NoError(t, err)
	require.NotContains(t, f.KernelMSRs(), uint32(MSRReferenceTSC), "no TSC page: the MSR #GPs in vmm")

	f, err = ParseFeatures("all")
	require.NoError(t, err)
	require.False(t, f.Kernel())
	require.NotContains(t, f.KernelMSRs(), uint32(MSRSTimer0Config))

	// Without stimer (an ablation) kernel-timers says nothing.
	f, err = ParseFeatures("all,kernel-timers,stimer-direct=off,stimer=off")
	require.NoError(t, err)
	require.False(t, f.Kernel())
	require.NotContains(t, f.String(), "kernel-timers")
	require.NotContains(t, f.KernelMSRs(), uint32(MSRTimeRefCount))
}

// synicHost is a host with KVM's SynIC: it records the mirrored writes.
type synicHost struct {
	*fakeHost
	err    error
	writes []kernelWrite
}

type kernelWrite struct {
	vcpu  int
	msr   uint32
	value uint64
}

func (h *synicHost) SetKernelSynIC(vcpu int, msr uint32, value uint64) error {
	if h.err != nil {
		return h.err
	}
	h.writes = append(h.writes, kernelWrite{vcpu, msr, value})
	return nil
}

func newKernelTimersPartition(t *testing.T, h *synicHost) testPart {
	return newHostPartition(t, "all,kernel-timers", h.fakeHost, h)
}

func TestKernelTimersNeedKernelSynIC(t *testing.T) {
	f, err := ParseFeatures("all,kernel-timers")
	require.NoError(t, err)
	_, err = New(Config{Features: f, CPUs: 1, Memory: &fakeMem{b: make([]byte, 1<<16)}, Host: &fakeHost{},
		Clock: &fakeClock{}, TSC: NewTSCParams(testTSCHz, 0), TSCHz: testTSCHz})
	require.ErrorIs(t, err, ErrConfig)
}

// TestKernelTimersMirrorSynIC: every SynIC write KVM's timers depend on
// reaches KVM's SynIC as the guest wrote it (SINTs unmasked, so KVM can
// raise them), after vmm accepted it; nothing else does.
func TestKernelTimersMirrorSynIC(t *testing.T) {
	h := &synicHost{fakeHost: &fakeHost{}}
	tp := newKernelTimersPartition(t, h)
	tp.mustWrite(t, 1, MSRVPAssistPage, 0x50001)
	tp.mustWrite(t, 1, MSRSControl, 1)
	tp.mustWrite(t, 1, MSRSIMP, 0x40001)
	tp.mustWrite(t, 1, MSRSIEFP, 0x41001)
	tp.mustWrite(t, 1, MSRSINT0+2, 0x93)
	tp.mustWrite(t, 1, MSRSINT0+3, sintAutoEOI|0x94)
	tp.mustWrite(t, 1, MSREOM, 0)
	require.False(t, tp.WriteMSR(1, MSRSINT0+4, 0x05), "vector below 16: #GP, not mirrored")
	require.Equal(t, []kernelWrite{{1, MSRSControl, 1}, {1, MSRSIMP, 0x40001}, {1, MSRSIEFP, 0x41001},
		{1, MSRSINT0 + 2, 0x93}, {1, MSRSINT0 + 3, sintAutoEOI | 0x94}, {1, MSREOM, 0}}, h.writes)
	s := tp.Summary()
	require.Equal(t, "kernel", s.Timers)
	require.Contains(t, s.NotCounted, "REFERENCE_TSC")
	require.True(t, s.VPs[1].KernelAutoEOI)
	require.False(t, s.VPs[0].KernelAutoEOI)

	// A refused mirror leaves vmm's SynIC as the guest wrote it.
	h.err = errors.New("KVM says no")
	tp.mustWrite(t, 0, MSRSINT0+2, 0x95)
	require.Equal(t, uint64(0x95), tp.mustRead(t, 0, MSRSINT0+2))
	require.False(t, tp.Summary().VPs[0].KernelAutoEOI)
}

// recordingBus counts the EOMs (retries) a partition gives its bus.
type recordingBus struct{ eoms int }

func (b *recordingBus) Post(uint32, []byte) uint16 { return StatusSuccess }
func (b *recordingBus) Signal(uint32) uint16       { return StatusSuccess }
func (b *recordingBus) EOM()                       { b.eoms++ }

// TestKernelTimersPostOutsideGuest: KVM may write a timer message into the
// page while the vCPU is in KVM_RUN, so a bus message for it then waits:
// the vCPU is kicked, and its thread has the bus retry once it is out.
func TestKernelTimersPostOutsideGuest(t *testing.T) {
	h := &synicHost{fakeHost: &fakeHost{}}
	tp := newKernelTimersPartition(t, h)
	bus := &recordingBus{}
	tp.AttachBus(bus)
	const simp = 0x40000
	tp.mustWrite(t, 0, MSRSControl, 1)
	tp.mustWrite(t, 0, MSRSIMP, simp|1)
	tp.mustWrite(t, 0, MSRSINT0+2, 0x93)
	slot := tp.mem.b[simp+2*msgSlotSize:]
	bh := tp.BusHost()

	tp.EnterGuest(0)
	require.False(t, bh.PostMessage(0, 2, []byte("hello")))
	require.Zero(t, binary.LittleEndian.Uint32(slot), "the slot untouched while the vCPU runs")
	require.Equal(t, []int{0}, tp.host.kicks)
	require.True(t, tp.NeedsProcess(0))
	require.Empty(t, tp.host.takeIRQs())
	// Another vCPU's page is free to write.
	tp.mustWrite(t, 1, MSRSControl, 1)
	tp.mustWrite(t, 1, MSRSIMP, (simp+0x1000)|1)
	tp.mustWrite(t, 1, MSRSINT0+2, 0x93)
	require.True(t, bh.PostMessage(1, 2, []byte("other")))

	tp.LeaveGuest(0)
	before := bus.eoms // the SynIC writes' own retries
	require.NoError(t, tp.Process(0, nil))
	require.Equal(t, before+1, bus.eoms, "the bus retries on the vCPU's thread")
	require.False(t, tp.NeedsProcess(0))
	require.NoError(t, tp.Process(0, nil))
	require.Equal(t, before+1, bus.eoms, "once")
	require.True(t, bh.PostMessage(0, 2, []byte("hello")))
	require.Equal(t, uint32(vmbusMessageType), binary.LittleEndian.Uint32(slot))
	require.Equal(t, "hello", string(slot[msgHeaderSize:msgHeaderSize+5]))
	require.Equal(t, []irq{{1, 0x93}, {0, 0x93}}, tp.host.takeIRQs())
}

// TestUserspaceTimersIgnoreGuestBrackets: without kernel-timers, posts never
// wait for the vCPU.
func TestUserspaceTimersIgnoreGuestBrackets(t *testing.T) {
	tp := newTestPartition(t, "all", 1)
	tp.mustWrite(t, 0, MSRSControl, 1)
	tp.mustWrite(t, 0, MSRSIMP, 0x40001)
	tp.mustWrite(t, 0, MSRSINT0+2, 0x93)
	tp.EnterGuest(0)
	require.True(t, tp.BusHost().PostMessage(0, 2, []byte("x")))
	require.Empty(t, tp.host.kicks)
	require.Equal(t, "userspace", tp.Summary().Timers)
}

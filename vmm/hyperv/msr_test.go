package hyperv

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTSCParamsHandComputed(t *testing.T) {
	// 2.5 GHz: scale = floor(10^7 * 2^64 / 2.5e9) = floor(2^64 / 250).
	p := NewTSCParams(2_500_000_000, 1_000_000_000)
	require.Equal(t, uint64(73786976294838206), p.Scale)
	// (1e9 * scale) >> 64 = 4e6 - epsilon -> 3999999.
	require.Equal(t, int64(-3999999), p.Offset)
	require.Equal(t, uint64(0), p.RefTime(1_000_000_000), "starts at 0")
	// One second of TSC later: floor(3.5e9*scale/2^64) = 13999999, minus 3999999.
	require.Equal(t, uint64(10_000_000), p.RefTime(3_500_000_000))
	// 3 GHz: floor(2^64 / 300).
	require.Equal(t, uint64(61489146912365172), NewTSCParams(3_000_000_000, 0).Scale)
	// A kHz-granular frequency, as KVM reports: 2994374 kHz.
	q := NewTSCParams(2_994_374_000, 0)
	require.Equal(t, uint64(61604676215160670), q.Scale)
	require.Equal(t, uint64(9_999_999), q.RefTime(2_994_374_000), "one second less rounding")

	page := p.EncodeTSCPage(7)
	le := binary.LittleEndian
	require.Equal(t, uint32(7), le.Uint32(page[0:]))
	require.Equal(t, p.Scale, le.Uint64(page[8:]))
	require.Equal(t, p.Offset, int64(le.Uint64(page[16:])))
}

func TestTSCClockFollowsTSC(t *testing.T) {
	tsc := uint64(5_000_000_000)
	c := &TSCClock{Params: NewTSCParams(2_500_000_000, 6_000_000_000), GuestOffset: 1_000_000_000,
		ReadTSC: func() uint64 { return tsc }}
	require.Equal(t, uint64(6_000_000_000), c.GuestTSC())
	require.Equal(t, uint64(0), c.Now())
	tsc += 250_000_000 // 0.1 s
	require.Equal(t, uint64(1_000_000), c.Now())
	// The real TSC moves forward.
	real := &TSCClock{Params: NewTSCParams(2_500_000_000, rdtsc())}
	a := real.GuestTSC()
	b := real.GuestTSC()
	require.GreaterOrEqual(t, b, a)
}

func TestBaseMSRs(t *testing.T) {
	tp := newTestPartition(t, "relaxed", 2)
	// Absent features' MSRs #GP.
	for _, msr := range []uint32{MSRVPIndex, MSRReset, MSRVPRuntime, MSRTimeRefCount, MSRReferenceTSC,
		MSRTSCFrequency, MSRSControl, MSRSINT0, MSRSTimer0Config, MSRCrashCtl, 0x40000050, 0x400001ff} {
		_, ok := tp.ReadMSR(0, msr)
		require.False(t, ok, msrName(msr))
		require.False(t, tp.WriteMSR(0, msr, 0), msrName(msr))
	}
	require.Zero(t, tp.mustRead(t, 0, MSRGuestOSID))
	// The hypercall page stays off while the guest OS ID is 0.
	tp.mustWrite(t, 0, MSRHypercall, 0x5000|hypercallEnable)
	require.Equal(t, uint64(0x5000), tp.mustRead(t, 0, MSRHypercall))
	require.Zero(t, tp.mem.b[0x5000])

	tp.mustWrite(t, 0, MSRGuestOSID, 0x8100_0000_0006_0100)
	require.Equal(t, uint64(0x8100_0000_0006_0100), tp.mustRead(t, 1, MSRGuestOSID), "partition-wide")
	tp.mustWrite(t, 1, MSRHypercall, 0x5000|hypercallEnable)
	code := HypercallCode(HypercallPort, SignalPort)
	require.Equal(t, append(code, 0xcc), tp.mem.b[0x5000:0x5000+len(code)+1])
	require.Equal(t, uint64(0x5001), tp.mustRead(t, 0, MSRHypercall))
	require.False(t, tp.WriteMSR(0, MSRHypercall, 0x1_0000_0000|hypercallEnable), "page outside RAM")

	// Guest OS ID 0 disables the page again.
	tp.mustWrite(t, 0, MSRGuestOSID, 0)
	require.Equal(t, uint64(0x5000), tp.mustRead(t, 0, MSRHypercall))

	// Locked: later writes are ignored.
	tp.mustWrite(t, 0, MSRGuestOSID, 1)
	tp.mustWrite(t, 0, MSRHypercall, 0x6000|hypercallEnable|hypercallLocked)
	tp.mustWrite(t, 0, MSRHypercall, 0)
	require.Equal(t, uint64(0x6003), tp.mustRead(t, 0, MSRHypercall))
}

func TestVPIndexRuntimeFrequenciesResetCrash(t *testing.T) {
	tp := newTestPartition(t, "vpindex,runtime,frequencies,reset,crash", 3)
	require.Equal(t, uint64(2), tp.mustRead(t, 2, MSRVPIndex))
	require.False(t, tp.WriteMSR(2, MSRVPIndex, 0), "VP_INDEX is read-only")
	_, ok := tp.ReadMSR(3, MSRVPIndex)
	require.False(t, ok, "no vCPU 3")
	tp.host.runtime = 12345
	require.Equal(t, uint64(12345), tp.mustRead(t, 0, MSRVPRuntime))
	require.False(t, tp.WriteMSR(0, MSRVPRuntime, 1))
	require.Equal(t, testTSCHz, tp.mustRead(t, 0, MSRTSCFrequency))
	require.Equal(t, uint64(1_000_000_000), tp.mustRead(t, 0, MSRAPICFrequency))
	require.False(t, tp.WriteMSR(0, MSRTSCFrequency, 1))
	require.False(t, tp.WriteMSR(0, MSRAPICFrequency, 1))

	require.Zero(t, tp.mustRead(t, 0, MSRReset))
	tp.mustWrite(t, 0, MSRReset, 0)
	require.Zero(t, tp.host.resets)
	tp.mustWrite(t, 0, MSRReset, 1)
	require.Equal(t, 1, tp.host.resets)

	require.Equal(t, uint64(crashNotify), tp.mustRead(t, 0, MSRCrashCtl))
	for i := uint32(0); i < 5; i++ {
		tp.mustWrite(t, 1, MSRCrashP0+i, 0x10+uint64(i))
	}
	require.Equal(t, uint64(0x12), tp.mustRead(t, 0, MSRCrashP0+2))
	tp.mustWrite(t, 1, MSRCrashCtl, 0)
	require.Empty(t, tp.host.crashes)
	tp.mustWrite(t, 1, MSRCrashCtl, crashNotify)
	require.Equal(t, [][5]uint64{{0x10, 0x11, 0x12, 0x13, 0x14}}, tp.host.crashes)
	require.Equal(t, []string{"0x10", "0x11", "0x12", "0x13", "0x14"}, tp.Summary().Crash)
}

func TestTimeRefCountAndTSCPage(t *testing.T) {
	tp := newTestPartition(t, "time", 1)
	tp.clock.Advance(777)
	require.Equal(t, uint64(777), tp.mustRead(t, 0, MSRTimeRefCount))
	require.False(t, tp.WriteMSR(0, MSRTimeRefCount, 0))

	binary.LittleEndian.PutUint32(tp.mem.b[0x3000:], 0xdead)
	tp.mustWrite(t, 0, MSRReferenceTSC, 0x3000) // not enabled: page untouched
	require.Equal(t, uint32(0xdead), binary.LittleEndian.Uint32(tp.mem.b[0x3000:]))
	tp.mustWrite(t, 0, MSRReferenceTSC, 0x3001)
	require.Equal(t, uint64(0x3001), tp.mustRead(t, 0, MSRReferenceTSC))
	want := tp.tsc.EncodeTSCPage(1)
	require.Equal(t, want[:], tp.mem.b[0x3000:0x3018])
	// TLFS: writes never fault, even for a page outside RAM.
	tp.mustWrite(t, 0, MSRReferenceTSC, 0xffff_f001)
	require.Equal(t, "0x3000", tp.Summary().TSCPage)
}

func TestTimeRefCountWithoutTSCPage(t *testing.T) {
	tp := newTestPartition(t, "time,tsc-page=off", 1)
	tp.clock.Advance(4242)
	require.Equal(t, uint64(4242), tp.mustRead(t, 0, MSRTimeRefCount))
	_, ok := tp.ReadMSR(0, MSRReferenceTSC)
	require.False(t, ok, "no TSC page: its MSR #GPs")
	require.False(t, tp.WriteMSR(0, MSRReferenceTSC, 0x3001))
	require.Empty(t, tp.Summary().TSCPage)
}

func TestSynICMSRs(t *testing.T) {
	tp := newTestPartition(t, "vpindex,synic", 2)
	require.Equal(t, uint64(1), tp.mustRead(t, 0, MSRSVersion))
	require.False(t, tp.WriteMSR(0, MSRSVersion, 1), "SVERSION is read-only")
	require.Equal(t, uint64(sintMasked), tp.mustRead(t, 0, MSRSINT0+5), "SINTs reset masked")
	tp.mustWrite(t, 0, MSRSControl, 1)
	require.False(t, tp.WriteMSR(0, MSRSControl, 2), "reserved SCONTROL bit")
	require.Equal(t, uint64(1), tp.mustRead(t, 0, MSRSControl))
	require.Zero(t, tp.mustRead(t, 1, MSRSControl), "per vCPU")

	require.False(t, tp.WriteMSR(0, MSRSINT0, 5), "unmasked vector below 16")
	tp.mustWrite(t, 0, MSRSINT0, sintMasked|5)
	require.False(t, tp.WriteMSR(0, MSRSINT0, 1<<20|0x30), "reserved SINT bit")
	tp.mustWrite(t, 0, MSRSINT0+2, sintAutoEOI|0x30)
	require.Equal(t, uint64(sintAutoEOI|0x30), tp.mustRead(t, 0, MSRSINT0+2))

	// Enabling SIMP/SIEFP clears the page.
	for i := range tp.mem.b[0x8000:0xa000] {
		tp.mem.b[0x8000+i] = 0xaa
	}
	tp.mustWrite(t, 0, MSRSIMP, 0x8001)
	tp.mustWrite(t, 0, MSRSIEFP, 0x9001)
	require.Equal(t, make([]byte, 0x2000), tp.mem.b[0x8000:0xa000])
	require.Equal(t, uint64(0x8001), tp.mustRead(t, 0, MSRSIMP))
	require.Equal(t, uint64(0x9001), tp.mustRead(t, 0, MSRSIEFP))
	require.False(t, tp.WriteMSR(0, MSRSIMP, 0xf000_0001), "page outside RAM")
	tp.mustWrite(t, 0, MSREOM, 0)
	require.Zero(t, tp.mustRead(t, 0, MSREOM))

	s := tp.Summary()
	require.True(t, s.VPs[0].SynIC)
	require.Equal(t, "0x8000", s.VPs[0].SIMP)
	require.Equal(t, []string{"2:0x30:auto-eoi"}, s.VPs[0].SINTs)
	require.False(t, s.VPs[1].SynIC)
	require.Equal(t, MSRCount{Reads: 0, Writes: 3, GP: 2}, s.MSRs["SINT0"])
}

func TestTraceLines(t *testing.T) {
	f, err := ParseFeatures("vpindex")
	require.NoError(t, err)
	var buf bytes.Buffer
	clock := &fakeClock{now: 42}
	p, err := New(Config{Features: f, CPUs: 1, Memory: &fakeMem{b: make([]byte, 4096)}, Host: &fakeHost{},
		Clock: clock, Trace: &buf})
	require.NoError(t, err)
	p.ReadMSR(0, MSRVPIndex)
	p.WriteMSR(0, MSRVPIndex, 3)
	p.Call(0, 0xffff, 0, 0)
	require.NoError(t, p.FlushTrace())
	var recs []TraceRecord
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var r TraceRecord
		require.NoError(t, json.Unmarshal(line, &r), string(line))
		recs = append(recs, r)
	}
	require.Len(t, recs, 3)
	require.Equal(t, TraceRecord{T: recs[0].T, Ref: 42, Kind: "rdmsr", MSR: "0x40000002", Name: "VP_INDEX", Value: "0x0"}, recs[0])
	require.True(t, recs[1].GP)
	require.Equal(t, "wrmsr", recs[1].Kind)
	require.Equal(t, "hypercall", recs[2].Kind)
	require.Equal(t, "INVALID_HYPERCALL_CODE", recs[2].Status)
	require.Equal(t, "0xffff", recs[2].Code)
}

func TestVPAssistPage(t *testing.T) {
	tp := newTestPartition(t, "relaxed", 2)
	for i := range tp.mem.b[0x4000:0x5000] {
		tp.mem.b[0x4000+i] = 0x5a
	}
	tp.mustWrite(t, 1, MSRVPAssistPage, 0x4001)
	require.Equal(t, make([]byte, 4096), tp.mem.b[0x4000:0x5000], "cleared on enable")
	require.Equal(t, uint64(0x4001), tp.mustRead(t, 1, MSRVPAssistPage))
	require.Zero(t, tp.mustRead(t, 0, MSRVPAssistPage), "per vCPU")
	require.False(t, tp.WriteMSR(0, MSRVPAssistPage, 0x4003), "reserved bit")
	require.False(t, tp.WriteMSR(0, MSRVPAssistPage, 0xfff_0001), "outside RAM")
	tp.mustWrite(t, 1, MSRVPAssistPage, 0)
}

// TestAPICAccessMSRsNeverServedHere: with vapic, KVM's LAPIC serves EOI,
// ICR and TPR (the VMM's MSR filter passes them to KVM); should one reach
// the partition anyway, or without vapic, the guest gets a #GP, never a
// write that pretends to reach the APIC. The VP assist page works the same
// with and without vapic, its apic_assist field left clear.
func TestAPICAccessMSRsNeverServedHere(t *testing.T) {
	for _, list := range []string{"relaxed", "windows"} {
		tp := newTestPartition(t, list, 1)
		for _, msr := range []uint32{MSREOI, MSRICR, MSRTPR} {
			require.False(t, tp.WriteMSR(0, msr, 0), "%s: wrmsr %s", list, msrName(msr))
			_, ok := tp.ReadMSR(0, msr)
			require.False(t, ok, "%s: rdmsr %s", list, msrName(msr))
		}
		tp.mem.b[0x6000] = 1 // a stale apic_assist bit
		tp.mustWrite(t, 0, MSRVPAssistPage, 0x6001)
		require.Zero(t, tp.mem.b[0x6000], "%s: apic_assist cleared on enable", list)
		require.Equal(t, uint64(0x6001), tp.mustRead(t, 0, MSRVPAssistPage))
		tp.mustWrite(t, 0, MSRVPAssistPage, 0)
		require.Zero(t, tp.mustRead(t, 0, MSRVPAssistPage))
	}
	require.Equal(t, []string{"EOI", "ICR", "TPR", "VP_ASSIST_PAGE"},
		[]string{msrName(MSREOI), msrName(MSRICR), msrName(MSRTPR), msrName(MSRVPAssistPage)})
}

// tscHost is a host whose vCPUs' TSCs the test sets (TSCReader).
type tscHost struct {
	*fakeHost
	tsc   map[int]uint64
	reads int
}

func (h *tscHost) GuestTSC(vcpu int) (uint64, error) { h.reads++; return h.tsc[vcpu], nil }

func TestPerVCPUClockFromItsTSC(t *testing.T) {
	f, err := ParseFeatures("all")
	require.NoError(t, err)
	clock := &fakeClock{now: 1000}
	host := &tscHost{fakeHost: &fakeHost{}, tsc: map[int]uint64{}}
	// 2.5 GHz, TSC 1e9 at reference time 0: ref r is TSC 1e9 + 250 r.
	p, err := New(Config{Features: f, CPUs: 2, Memory: &fakeMem{b: make([]byte, 1<<20)}, Host: host, Clock: clock,
		TSC: NewTSCParams(testTSCHz, 1e9), TSCHz: testTSCHz})
	require.NoError(t, err)
	host.tsc[0] = 1e9 + 250*5000 // vCPU 0's clock is 4000 ahead of the partition clock
	host.tsc[1] = 1e9 + 250*500  // vCPU 1's is 500 behind
	v, ok := p.ReadMSR(0, MSRTimeRefCount)
	require.True(t, ok)
	require.Equal(t, uint64(5000), v)
	v, _ = p.ReadMSR(1, MSRTimeRefCount)
	require.Equal(t, uint64(500), v)
	// MSRs that do not read the clock leave the sample alone (no TSC read).
	host.tsc[1] = 1e9 + 250*9000
	_, ok = p.ReadMSR(1, MSRVPIndex)
	require.True(t, ok)
	require.Equal(t, int64(500-1000), p.vp(1).skew.Load())
	host.tsc[1] = 1e9 + 250*500

	// One-shot direct timers 100 ahead on each vCPU's own clock.
	cfg := uint64(stimerEnable | stimerAutoEnable | stimerDirect | 0x40<<stimerVectorShft)
	require.True(t, p.WriteMSR(0, MSRSTimer0Config, cfg))
	require.True(t, p.WriteMSR(0, MSRSTimer0Config+1, 5100))
	require.True(t, p.WriteMSR(1, MSRSTimer0Config, cfg))
	require.True(t, p.WriteMSR(1, MSRSTimer0Config+1, 600))
	require.Empty(t, host.takeIRQs(), "neither is due on its vCPU's clock")
	clock.Advance(99)
	require.Empty(t, host.takeIRQs())
	clock.Advance(1)
	require.ElementsMatch(t, []irq{{0, 0x40}, {1, 0x40}}, host.takeIRQs())
}

// A one-shot timer set at or before the time the vCPU last read expires
// without another TSC read (an ioctl per exit); one ahead of it, or a
// periodic one, reads the TSC for its wait.
func TestPastTimerNeedsNoSample(t *testing.T) {
	f, err := ParseFeatures("all")
	require.NoError(t, err)
	clock := &fakeClock{now: 1000}
	host := &tscHost{fakeHost: &fakeHost{}, tsc: map[int]uint64{0: 1e9 + 250*5000}}
	p, err := New(Config{Features: f, CPUs: 1, Memory: &fakeMem{b: make([]byte, 1<<20)}, Host: host, Clock: clock,
		TSC: NewTSCParams(testTSCHz, 1e9), TSCHz: testTSCHz})
	require.NoError(t, err)
	cfg := uint64(stimerAutoEnable | stimerDirect | 0x40<<stimerVectorShft)
	require.True(t, p.WriteMSR(0, MSRSTimer0Config, cfg))
	require.Zero(t, host.reads, "a config write that arms nothing")
	require.True(t, p.WriteMSR(0, MSRSTimer0Config+1, 1))
	require.Equal(t, 1, host.reads, "first arm: no sample yet")
	require.Equal(t, []irq{{0, 0x40}}, host.takeIRQs())
	for _, count := range []uint64{1, 4999, 5000} {
		require.True(t, p.WriteMSR(0, MSRSTimer0Config+1, count))
		require.Equal(t, []irq{{0, 0x40}}, host.takeIRQs(), "count %d", count)
	}
	require.Equal(t, 1, host.reads)
	// Ahead of the sample: its wait is measured from a fresh one.
	host.tsc[0] = 1e9 + 250*5050
	require.True(t, p.WriteMSR(0, MSRSTimer0Config+1, 5040))
	require.Equal(t, 2, host.reads)
	require.Equal(t, []irq{{0, 0x40}}, host.takeIRQs(), "5040 is past on the vCPU's clock (5050)")
	require.True(t, p.WriteMSR(0, MSRSTimer0Config+1, 5060))
	require.Equal(t, 3, host.reads)
	require.Empty(t, host.takeIRQs())
	clock.Advance(9)
	require.Empty(t, host.takeIRQs())
	clock.Advance(1)
	require.Equal(t, []irq{{0, 0x40}}, host.takeIRQs())
	require.True(t, p.WriteMSR(0, MSRSTimer0Config, cfg|stimerPeriodic))
	require.True(t, p.WriteMSR(0, MSRSTimer0Config+1, minPeriod))
	require.Equal(t, 4, host.reads, "periodic: phase from a fresh sample")
}

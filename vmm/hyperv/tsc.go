package hyperv

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"time"
)

// refUnit is the reference counter's unit: 100 ns.
const refUnit = 100 * time.Nanosecond

// refPerSecond is reference counter ticks per second.
const refPerSecond = uint64(time.Second / refUnit)

// TSCParams are the reference TSC page's scale and offset. The page and the
// TIME_REF_COUNT MSR both derive from them, so the guest sees one clock:
// ReferenceTime = ((TSC * Scale) >> 64) + Offset, in 100 ns units.
type TSCParams struct {
	Scale  uint64
	Offset int64
}

// NewTSCParams returns the parameters for a guest TSC running at tscHz that
// read tsc0 when the partition started, so that reference time starts at 0.
// tscHz must exceed 10 MHz (the reference counter's rate); callers check.
func NewTSCParams(tscHz, tsc0 uint64) TSCParams {
	// scale = floor(10^7 * 2^64 / tscHz): the 128-bit dividend is 10^7:0.
	scale, _ := bits.Div64(refPerSecond, 0, tscHz)
	p := TSCParams{Scale: scale}
	p.Offset = -int64(p.scaled(tsc0))
	return p
}

func (p TSCParams) scaled(tsc uint64) uint64 {
	hi, _ := bits.Mul64(tsc, p.Scale)
	return hi
}

// RefTime is the reference time (100 ns units) at guest TSC value tsc.
func (p TSCParams) RefTime(tsc uint64) uint64 {
	return uint64(int64(p.scaled(tsc)) + p.Offset)
}

// TSC page layout (TLFS: HV_REFERENCE_TSC_PAGE).
const (
	tscPageSequence = 0
	tscPageScale    = 8
	tscPageOffset   = 16
	tscPageUsed     = 24
)

// EncodeTSCPage returns the first bytes of a reference TSC page with
// sequence seq (never 0: 0 tells the guest to use the MSR instead).
func (p TSCParams) EncodeTSCPage(seq uint32) [tscPageUsed]byte {
	var b [tscPageUsed]byte
	le := binary.LittleEndian
	le.PutUint32(b[tscPageSequence:], seq)
	le.PutUint64(b[tscPageScale:], p.Scale)
	le.PutUint64(b[tscPageOffset:], uint64(p.Offset))
	return b
}

// Clock is the partition's time base. Now is the reference time in 100 ns
// units; AfterFunc calls f(arg) (on its own goroutine) after d 100 ns
// units. The argument lets a caller that re-arms at every guest tick pass
// one callback made once, not a closure per arm. Tests use a fake clock;
// TSCClock is the real one.
type Clock interface {
	Now() uint64
	AfterFunc(d uint64, f func(arg uint64), arg uint64) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop cancels the call; false if it already ran or was stopped.
	Stop() bool
}

// TSCClock reads the reference time from the host TSC: guest TSC = host TSC
// + GuestOffset (KVM's TSC offset; no TSC scaling).
type TSCClock struct {
	Params      TSCParams
	GuestOffset int64
	// ReadTSC returns the host TSC; nil means the RDTSC instruction.
	ReadTSC func() uint64

	timers fdTimers
}

// GuestTSC is the guest's TSC now.
func (c *TSCClock) GuestTSC() uint64 {
	read := c.ReadTSC
	if read == nil {
		read = rdtsc
	}
	return uint64(int64(read()) + c.GuestOffset)
}

// Now implements Clock.
func (c *TSCClock) Now() uint64 { return c.Params.RefTime(c.GuestTSC()) }

// AfterFunc implements Clock with pooled timerfds (fdTimers), or the Go
// runtime's timers where no timerfd can be had. After Close it arms nothing.
func (c *TSCClock) AfterFunc(d uint64, f func(uint64), arg uint64) Timer {
	const maxUnits = uint64(1<<63-1) / uint64(refUnit)
	dur := time.Duration(min(d, maxUnits)) * refUnit
	t, err := c.timers.afterFunc(dur, f, arg)
	switch {
	case err == nil:
		return t
	case errors.Is(err, errTimersClosed):
		return stoppedTimer{}
	}
	return time.AfterFunc(dur, func() { f(arg) })
}

// Close releases the clock's timers; callbacks not yet run never run.
func (c *TSCClock) Close() error { return c.timers.close() }

// stoppedTimer is a Timer that never fires.
type stoppedTimer struct{}

func (stoppedTimer) Stop() bool { return false }

// HostTSC reads the host's time-stamp counter.
func HostTSC() uint64 { return rdtsc() }

package hyperv

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
)

// Memory is guest RAM as the partition needs it: Slice returns n bytes at
// gpa aliasing guest memory (message slots are updated with atomics there).
type Memory interface {
	Slice(gpa, n uint64) ([]byte, error)
}

// Host is what the partition needs from the VMM.
type Host interface {
	// Interrupt sends a fixed, edge-triggered interrupt with vector to the
	// local APIC of vCPU vcpu (whose APIC ID is its index).
	Interrupt(vcpu int, vector uint8) error
	// Kick makes vCPU vcpu leave the guest soon and call Process on its own thread.
	Kick(vcpu int)
	// FlushTLB flushes the guest TLBs of vcpus and returns once that is
	// done; caller is the vCPU making the hypercall (on its thread).
	FlushTLB(caller int, vcpus []int) error
	// Runtime is the time vCPU vcpu has run, in 100 ns units; it is called
	// on that vCPU's thread.
	Runtime(vcpu int) uint64
	// Reset and Crash end the VM: the guest wrote the reset MSR, or the
	// crash control MSR with the crash parameters P0-P4.
	Reset()
	Crash(params [5]uint64)
}

// Config is what New needs.
type Config struct {
	Features Features
	CPUs     int
	Memory   Memory
	Host     Host
	Clock    Clock
	// TSC is the reference TSC page's scale and offset (the same Clock uses).
	TSC TSCParams
	// TSCHz is the guest TSC frequency, for the TSC_FREQUENCY MSR.
	TSCHz uint64
	// Trace, if set, receives one JSON line per synthetic MSR access and hypercall.
	Trace io.Writer
	Log   *slog.Logger
}

// ErrConfig marks an unusable Config.
var ErrConfig = errors.New("hyperv: invalid configuration")

// Partition is the Hyper-V state of one VM. Its methods are safe for
// concurrent use by all vCPU threads and timer goroutines.
type Partition struct {
	f     Features
	mem   Memory
	host  Host
	clock Clock
	tsc   TSCParams
	tscHz uint64
	log   *slog.Logger
	trace *tracer
	stats *stats
	// kernel: the timers and reference clock are KVM's (kernel.go).
	kernel bool

	mu        sync.Mutex // guards the partition-wide MSRs below
	guestOSID uint64
	hypercall uint64
	refTSC    uint64
	crash     [5]uint64
	crashCtl  uint64

	vps []*vp
	// conns are SINT routes and connections (connections.go).
	conns connections
	// bus takes the connections conns does not (bus.go).
	bus busHolder
}

// vp is one virtual processor's SynIC and timers.
type vp struct {
	index int
	// need is set when Process has work on this vCPU's thread (auto-EOI).
	need atomic.Bool
	// skew is this vCPU's reference time minus the partition clock's, as
	// last sampled from its own TSC (see sample).
	skew atomic.Int64
	// sampled is this vCPU's reference time at that sample: a time the
	// guest has reached (its TSC does not go back), so a one-shot timer
	// set at or before it is in the past without a new sample.
	sampled atomic.Uint64
	// armLogs counts timer arms for the debug log.
	armLogs atomic.Int64
	// mirrorLogs counts failed writes to KVM's SynIC (kernel.go).
	mirrorLogs atomic.Int64

	mu       sync.Mutex
	assist   uint64 // VP_ASSIST_PAGE
	scontrol uint64
	siefp    uint64
	simp     uint64
	sint     [16]uint64
	timers   [4]stimer
	// aeoi holds vectors delivered through auto-EOI SINTs whose in-service
	// bit Process must clear once the guest has accepted them.
	aeoi     [4]uint64
	aeoiKick Timer
	// aeoiRetry is aeoiKick's callback, made once.
	aeoiRetry func(uint64)
	// aeoiWhere says who does the auto-EOI (aeoi.go).
	aeoiWhere int
	// inGuest: the vCPU is in KVM_RUN, where KVM may write its message
	// page; busRetry: a bus message waited for it to leave (kernel.go).
	inGuest, busRetry bool
}

// New creates the partition state for cfg.
func New(cfg Config) (*Partition, error) {
	if !cfg.Features.Enabled() {
		return nil, fmt.Errorf("%w: Hyper-V is off", ErrConfig)
	}
	if err := cfg.Features.Check(); err != nil {
		return nil, err
	}
	if cfg.CPUs < 1 || cfg.Memory == nil || cfg.Host == nil || cfg.Clock == nil {
		return nil, fmt.Errorf("%w: need CPUs, Memory, Host and Clock", ErrConfig)
	}
	if cfg.Features.Time && cfg.TSC.Scale == 0 {
		return nil, fmt.Errorf("%w: time needs the TSC scale", ErrConfig)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Partition{f: cfg.Features, mem: cfg.Memory, host: cfg.Host, clock: cfg.Clock,
		tsc: cfg.TSC, tscHz: cfg.TSCHz, log: log, stats: newStats(cfg.CPUs), kernel: cfg.Features.Kernel()}
	if _, ok := cfg.Host.(KernelSynIC); p.kernel && !ok {
		return nil, fmt.Errorf("%w: kernel-timers needs a host with KVM's SynIC", ErrConfig)
	}
	if cfg.Trace != nil {
		p.trace = newTracer(cfg.Trace, cfg.Clock)
	}
	for i := 0; i < cfg.CPUs; i++ {
		v := &vp{index: i}
		for s := range v.sint {
			v.sint[s] = sintMasked
		}
		for t := range v.timers {
			v.timers[t].index = t
		}
		p.vps = append(p.vps, v)
	}
	return p, nil
}

// Features returns the switches the partition was built with.
func (p *Partition) Features() Features { return p.f }

func (p *Partition) vp(vcpu int) *vp {
	if vcpu < 0 || vcpu >= len(p.vps) {
		return nil
	}
	return p.vps[vcpu]
}

// TSCReader is implemented by hosts that can read a vCPU's own TSC (its
// IA32_TSC) on that vCPU's thread.
type TSCReader interface {
	GuestTSC(vcpu int) (uint64, error)
}

// sample re-anchors vCPU vcpu's view of reference time to its own TSC,
// when the host can read it. On hosts whose TSC KVM deems unstable, KVM
// moves each vCPU's TSC offset whenever the vCPU thread is scheduled in, so
// one partition-wide offset drifts away from what the guest reads from the
// TSC page; the skew keeps TIME_REF_COUNT and timers on each vCPU's clock.
// Called on the vCPU's thread, at its synthetic MSR accesses.
func (p *Partition) sample(vcpu int) {
	r, ok := p.host.(TSCReader)
	v := p.vp(vcpu)
	if !ok || v == nil || p.tsc.Scale == 0 {
		return
	}
	tsc, err := r.GuestTSC(vcpu)
	if err != nil {
		return
	}
	ref := p.tsc.RefTime(tsc)
	v.skew.Store(int64(ref - p.clock.Now()))
	v.sampled.Store(ref)
}

// guestNow is reference time as vCPU v last showed it to be, carried on by
// the partition clock.
func (p *Partition) guestNow(v *vp) uint64 {
	return uint64(int64(p.clock.Now()) + v.skew.Load())
}

// clockMSR reports whether an access to msr may read the vCPU's reference
// time: TIME_REF_COUNT, and the SynIC MSRs (retrying a timer's message
// after EOM or a SynIC change). Only these sample the vCPU's TSC, which
// costs an ioctl on every exit. Timer writes sample when they need to
// (writeSTimer). With kernel timers vmm keeps no time: nothing samples.
func clockMSR(msr uint32) bool {
	return msr == MSRTimeRefCount || msr >= MSRSControl && msr <= MSREOM ||
		msr >= MSRSINT0 && msr <= MSRSINT15
}

// ReadMSR answers a guest RDMSR of a synthetic MSR; false means #GP.
func (p *Partition) ReadMSR(vcpu int, msr uint32) (uint64, bool) {
	if clockMSR(msr) && !p.kernel {
		p.sample(vcpu)
	}
	v, ok := p.readMSR(vcpu, msr)
	p.stats.msr(vcpu, msr, false, !ok)
	p.trace.msr(vcpu, "rdmsr", msr, v, !ok)
	return v, ok
}

// WriteMSR performs a guest WRMSR of a synthetic MSR; false means #GP.
func (p *Partition) WriteMSR(vcpu int, msr uint32, value uint64) bool {
	if clockMSR(msr) && !p.kernel {
		p.sample(vcpu)
	}
	ok := p.writeMSR(vcpu, msr, value)
	p.stats.msr(vcpu, msr, true, !ok)
	p.trace.msr(vcpu, "wrmsr", msr, value, !ok)
	return ok
}

// present reports whether msr exists with the partition's switches.
func (p *Partition) present(msr uint32) bool {
	f := p.f
	switch {
	case msr == MSRGuestOSID || msr == MSRHypercall:
		return true
	case msr == MSRVPAssistPage:
		// Linux 6.1 enables a VP assist page on every CPU whatever the
		// hints say; KVM accepts it likewise. vmm keeps the page's
		// address and clears it on enable; it never sets the page's
		// apic_assist bit (KVM's lazy EOI), so a guest with vapic always
		// EOIs through the EOI MSR, which TLFS guests must be ready for.
		return true
	case msr == MSREOI || msr == MSRICR || msr == MSRTPR:
		// With vapic these never get here: KVM's LAPIC serves them
		// (KernelMSRs). Without it they do not exist.
		return false
	case msr == MSRVPIndex:
		// The reference TSC page brings the VP index (cpuid.go).
		return f.VPIndex || f.TSCPage()
	case msr == MSRReset:
		return f.Reset
	case msr == MSRVPRuntime:
		return f.Runtime
	case msr == MSRTimeRefCount:
		return f.Time
	case msr == MSRReferenceTSC:
		return f.TSCPage()
	case msr == MSRTSCFrequency || msr == MSRAPICFrequency:
		return f.Frequencies
	case msr >= MSRSControl && msr <= MSREOM, msr >= MSRSINT0 && msr <= MSRSINT15:
		return f.SynIC
	case msr >= MSRSTimer0Config && msr <= MSRSTimer3Count:
		return f.STimer
	case msr >= MSRCrashP0 && msr <= MSRCrashCtl:
		return f.Crash
	}
	return false
}

func (p *Partition) readMSR(vcpu int, msr uint32) (uint64, bool) {
	v := p.vp(vcpu)
	if v == nil || !p.present(msr) {
		return 0, false
	}
	switch msr {
	case MSRGuestOSID, MSRHypercall, MSRReferenceTSC, MSRCrashCtl:
		p.mu.Lock()
		defer p.mu.Unlock()
		switch msr {
		case MSRGuestOSID:
			return p.guestOSID, true
		case MSRHypercall:
			return p.hypercall, true
		case MSRReferenceTSC:
			return p.refTSC, true
		}
		// The guest reads CRASH_CTL to learn which actions are supported.
		return crashNotify, true
	case MSRVPIndex:
		return uint64(vcpu), true
	case MSRReset:
		return 0, true
	case MSRVPRuntime:
		return p.host.Runtime(vcpu), true
	case MSRTimeRefCount:
		return p.guestNow(v), true
	case MSRTSCFrequency:
		return p.tscHz, true
	case MSRAPICFrequency:
		return apicFrequency, true
	}
	if msr >= MSRCrashP0 && msr <= MSRCrashP4 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.crash[msr-MSRCrashP0], true
	}
	return v.readSynIC(msr)
}

func (p *Partition) writeMSR(vcpu int, msr uint32, value uint64) bool {
	v := p.vp(vcpu)
	if v == nil || !p.present(msr) {
		return false
	}
	switch msr {
	case MSRGuestOSID:
		p.mu.Lock()
		p.guestOSID = value
		// A zero guest OS ID disables the hypercall page (TLFS).
		if value == 0 {
			p.hypercall &^= hypercallEnable
		}
		p.mu.Unlock()
		return true
	case MSRHypercall:
		return p.writeHypercallMSR(value)
	case MSRReset:
		if value&1 != 0 {
			p.host.Reset()
		}
		return true
	case MSRReferenceTSC:
		return p.writeRefTSC(value)
	case MSRCrashCtl:
		p.mu.Lock()
		p.crashCtl = value
		params := p.crash
		p.mu.Unlock()
		if value&crashNotify != 0 {
			p.stats.setCrash(params)
			p.host.Crash(params)
		}
		return true
	case MSRVPIndex, MSRVPRuntime, MSRTimeRefCount, MSRTSCFrequency, MSRAPICFrequency, MSRSVersion:
		return false // read-only
	}
	if msr >= MSRCrashP0 && msr <= MSRCrashP4 {
		p.mu.Lock()
		p.crash[msr-MSRCrashP0] = value
		p.mu.Unlock()
		return true
	}
	if msr >= MSRSTimer0Config && msr <= MSRSTimer3Count {
		return p.writeSTimer(v, msr, value)
	}
	ok := p.writeSynIC(v, msr, value)
	if ok {
		p.busEOM(msr)
	}
	return ok
}

// HypercallCode is the hypercall page's code. Every hypercall but one is
// "out HypercallPort, al; ret": the port write exits to the VMM (a VMCALL
// would be handled, or swallowed, inside KVM), whose handler puts the
// result in the registers before the guest returns to its caller.
//
// The exception is the one a VMBus guest makes per request: a fast
// HvSignalEvent (64-bit convention, RCX = 0x1005d, RDX = connection id
// with flag number 0). It writes the connection id to SignalPort, where
// the VMM registers an ioeventfd per open channel (datamatch on the id),
// as virtio's queue notifications are served: KVM completes the write in
// the kernel and wakes the device, and the guest goes on without leaving
// KVM_RUN, as with KVM's own Hyper-V signal eventfds. The page then
// returns HV_STATUS_SUCCESS. A write no ioeventfd takes exits like any
// port write; the VMM then does the hypercall (SignalFallback) and clears
// RCX, which tells the page to return the VMM's RAX instead.
//
// The same bytes run in 32-bit mode, where 0x48 is "dec eax" rather than
// a REX prefix: the first instructions tell the modes apart without
// changing a register, and 32-bit callers take the port exit.
func HypercallCode(port, signalPort uint8) []byte {
	return []byte{
		0x50,       //  0: push rax
		0x31, 0xc0, //  1: xor eax, eax
		0x48, 0x85, 0xc0, //  3: test rax, rax (32-bit: dec eax; test eax, eax)
		0x58,       //  6: pop rax (flags kept)
		0x75, 0x21, //  7: jnz slow (32-bit mode)
		0x48, 0x81, 0xf9, 0x5d, 0x00, 0x01, 0x00, //  9: cmp rcx, 0x1005d (fast HvSignalEvent)
		0x75, 0x18, // 16: jne slow
		0x48, 0x89, 0xd0, // 18: mov rax, rdx
		0x48, 0xc1, 0xe8, 0x20, // 21: shr rax, 32
		0x75, 0x0f, // 25: jnz slow (a flag number: not the fast path)
		0x89, 0xd0, // 27: mov eax, edx
		0xe7, signalPort, // 29: out signalPort, eax
		0x81, 0xf9, 0x5d, 0x00, 0x01, 0x00, // 31: cmp ecx, 0x1005d (cleared by SignalFallback)
		0x75, 0x02, // 37: jne ret
		0x31, 0xc0, // 39: xor eax, eax (HV_STATUS_SUCCESS)
		0xc3,       // 41: ret
		0xe6, port, // 42: slow: out port, al
		0xc3, // 44: ret
	}
}

// HypercallPort is the I/O port the hypercall page writes to: below 0x100
// for the imm8 form, and claimed by no PC device (QEMU's pc-testdev, which
// Hyper-V test suites use alongside, takes 0xe0-0xeb).
const HypercallPort = 0xef

// SignalPort is where the hypercall page writes a fast HvSignalEvent's
// connection id (4 bytes), next to HypercallPort.
const SignalPort = 0xee

// fastSignalControl is the hypercall input value of a fast HvSignalEvent
// with no reps and no variable header: the page's fast path.
const fastSignalControl = CallSignalEvent | hypercallFastBit

func (p *Partition) writeHypercallMSR(value uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hypercall&hypercallLocked != 0 {
		return true // locked until reset: writes are ignored
	}
	if p.guestOSID == 0 {
		value &^= hypercallEnable
	}
	if value&hypercallEnable != 0 {
		code := HypercallCode(HypercallPort, SignalPort)
		page, err := p.mem.Slice(value&pageMask, 4096)
		if err != nil {
			return false
		}
		// The rest of the page is filled with int3 so a stray jump into
		// it faults rather than running leftovers.
		for i := range page {
			page[i] = 0xcc
		}
		copy(page, code)
		p.stats.setHypercallPage(value & pageMask)
	}
	p.hypercall = value
	return true
}

func (p *Partition) writeRefTSC(value uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refTSC = value
	if value&pageEnable == 0 {
		return true
	}
	page, err := p.mem.Slice(value&pageMask, 4096)
	if err != nil {
		// TLFS: this MSR never faults; a page outside RAM is just unused.
		p.log.Warn("Hyper-V reference TSC page outside guest RAM", "gpa", fmt.Sprintf("%#x", value&pageMask))
		return true
	}
	// Sequence 0 first: a reader on another vCPU retries (or uses the MSR)
	// until scale and offset are in place.
	atomicStore32(page[tscPageSequence:], 0)
	b := p.tsc.EncodeTSCPage(1)
	copy(page[tscPageScale:tscPageUsed], b[tscPageScale:])
	atomicStore32(page[tscPageSequence:], 1)
	p.stats.setTSCPage(value & pageMask)
	return true
}

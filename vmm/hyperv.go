package vmm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/vmm/hyperv"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// msrIA32TSC is the guest's time-stamp counter MSR.
const msrIA32TSC = 0x10

// cr4PGE is CR4's global-pages bit; toggling it makes KVM drop the vCPU's
// guest TLB (see flushGuestTLB).
const cr4PGE = 1 << 7

// hvMachine joins a Hyper-V partition to the machine: it is the
// partition's Host (interrupts, kicks, TLB flushes, stops) and holds the
// per-vCPU TLB flush requests.
type hvMachine struct {
	m     *Machine
	part  *hyperv.Partition
	clock *hyperv.TSCClock
	// ref is the reference time the guest reads: clock, or with kernel
	// timers KVM's (kernelRefClock).
	ref hyperv.Clock
	tlb []*tlbRequests
	// synic records the vCPUs whose in-kernel SynIC is on (SetKernelSINT);
	// each entry is touched only on its vCPU's thread.
	synic []bool
	// statsOnce starts the debug-level activity log with the first vCPU.
	statsOnce sync.Once
}

// statsEvery is how often the activity log (debug level) reports what the
// guest is doing with the enlightenments: enough to tell a stuck guest
// from a slow one.
const statsEvery = 10 * time.Second

// logActivity logs the Hyper-V counters every statsEvery until the VM stops.
func (h *hvMachine) logActivity() {
	if !h.m.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	t := time.NewTicker(statsEvery)
	defer t.Stop()
	for {
		select {
		case <-h.m.latch.Done():
			return
		case <-t.C:
		}
		s := h.part.Summary()
		calls := map[string]uint64{}
		for k, v := range s.Hypercalls {
			calls[k] = v.Calls
		}
		msrs := map[string]uint64{}
		for k, v := range s.MSRs {
			msrs[k] = v.Reads + v.Writes
		}
		var timers []string
		for _, vp := range s.VPs {
			for _, tm := range vp.Timers {
				timers = append(timers, fmt.Sprintf("vp%d/t%d:%s:%d/%d", vp.VP, tm.Timer, tm.Mode, tm.Delivered, tm.Expired))
			}
		}
		h.m.log.Debug("Hyper-V activity", "hypercalls", calls, "msrs", msrs, "timers", timers)
	}
}

// tlbRequests are the TLB flushes other vCPUs asked this vCPU to do; wake
// tells a vCPU waiting in a flush hypercall of its own that it has some.
type tlbRequests struct {
	mu      sync.Mutex
	waiters []chan<- struct{}
	wake    chan struct{}
}

// setupHyperV builds the partition for cfg.HyperV after the vCPUs exist:
// MSR filter and userspace MSR exits, the reference clock from the guest
// TSC, and the hypercall port.
func (m *Machine) setupHyperV() error {
	f := m.cfg.HyperV
	if !f.Enabled() {
		return nil
	}
	for _, c := range []kvm.Cap{kvm.CapX86UserSpaceMSR, kvm.CapX86MSRFilter} {
		if n, err := m.sys.CheckExtension(c); err != nil || n == 0 {
			return fmt.Errorf("--hyperv needs KVM's %v, which this host lacks", c)
		}
	}
	if err := m.vm.EnableCap(kvm.CapX86UserSpaceMSR, kvm.MSRExitReasonFilter); err != nil {
		return fmt.Errorf("enable userspace MSR exits: %w", err)
	}
	// Deny the synthetic range, so every access exits to us and KVM's own
	// Hyper-V code (on hosts that have it) never sees one, except those
	// KVM must serve (the bitmap's set bits).
	err := m.vm.SetMSRFilter(kvm.MSRFilter{Ranges: []kvm.MSRFilterRange{{
		Flags: kvm.MSRFilterRead | kvm.MSRFilterWrite, Base: hyperv.FilterBase, NMSRs: hyperv.FilterCount,
		Bitmap: f.FilterBitmap(),
	}}})
	if err != nil {
		return fmt.Errorf("install the Hyper-V MSR filter: %w", err)
	}
	boot := m.vcpus[0].kvm
	khz, err := boot.GetTSCKHz()
	if err != nil {
		return fmt.Errorf("guest TSC frequency: %w", err)
	}
	hz := uint64(khz) * 1000
	if hz <= 10_000_000 {
		return fmt.Errorf("guest TSC frequency %d kHz is too low for the Hyper-V reference clock", khz)
	}
	off, err := guestTSCOffset(boot)
	if err != nil {
		return err
	}
	clock := &hyperv.TSCClock{GuestOffset: off}
	clock.Params = hyperv.NewTSCParams(hz, clock.GuestTSC())
	hm := &hvMachine{m: m, clock: clock, synic: make([]bool, len(m.vcpus))}
	for range m.vcpus {
		hm.tlb = append(hm.tlb, &tlbRequests{wake: make(chan struct{}, 1)})
	}
	hm.ref = clock
	if f.Kernel() {
		hm.ref = kernelRefClock{TSCClock: clock, vm: m.vm}
	}
	hm.part, err = hyperv.New(hyperv.Config{Features: f, CPUs: m.cfg.CPUs, Memory: m.mem, Host: hm,
		Clock: hm.ref, TSC: clock.Params, TSCHz: hz, Trace: m.cfg.HyperVTrace, Log: m.log})
	if err != nil {
		return err
	}
	if f.Kernel() {
		// KVM takes the timer MSRs only from a vCPU whose SynIC is on.
		for i := range m.vcpus {
			if err := hm.enableKernelSynIC(i); err != nil {
				return err
			}
		}
	}
	if err := m.pio.Register(hyperv.HypercallPort, 1, hypercallPortDevice{}, "hyperv-hypercall"); err != nil {
		return fmt.Errorf("register the Hyper-V hypercall port: %w", err)
	}
	if err := m.pio.Register(hyperv.SignalPort, 1, hypercallPortDevice{}, "hyperv-signal"); err != nil {
		return fmt.Errorf("register the Hyper-V signal port: %w", err)
	}
	m.hv = hm
	m.hypervSummary = hm.Summary
	m.log.Info("Hyper-V enlightenments on", "features", f.String(), "tsc_khz", khz, "tsc_offset", off)
	return nil
}

// hypervForHost resolves cfg.HyperV's vapic for this host, before the
// vCPUs' CPUID is built: vapic's EOI, ICR and TPR MSRs act on the in-kernel
// LAPIC, which only KVM's own Hyper-V code can do exactly (see
// hyperv.Features.KernelMSRs).
func (m *Machine) hypervForHost() error {
	f := m.cfg.HyperV
	if f.Enabled() && f.Kernel() {
		if missing := m.missingKernelTimerCaps(); len(missing) > 0 {
			m.log.Warn("Hyper-V kernel-timers unavailable: this host's KVM lacks them; the timers stay in vmm",
				"missing", missing)
			f.KernelTimers = false
			m.cfg.HyperV = f
		}
	}
	if !f.Enabled() || !f.VAPIC {
		return nil
	}
	n, err := m.sys.CheckExtension(kvm.CapHyperVVAPIC)
	g, err2 := f.ForHost(err == nil && n > 0)
	if err2 != nil {
		return fmt.Errorf("--hyperv %s: %w", f, err2)
	}
	if !g.VAPIC {
		m.log.Info("Hyper-V vapic left out: this host's KVM has no in-kernel Hyper-V APIC MSRs", "cap", kvm.CapHyperVVAPIC)
	}
	m.cfg.HyperV = g
	return nil
}

// missingKernelTimerCaps lists the capabilities kernel-timers needs that
// the host's KVM lacks: its Hyper-V MSRs, a SynIC per vCPU that leaves the
// pages to vmm (SYNIC2), and the reference counter and TSC page (TIME).
func (m *Machine) missingKernelTimerCaps() []string {
	var missing []string
	for _, c := range []kvm.Cap{kvm.CapHyperV, kvm.CapHyperVSynIC2, kvm.CapHyperVTime} {
		if n, err := m.sys.CheckExtension(c); err != nil || n == 0 {
			missing = append(missing, c.String())
		}
	}
	return missing
}

// guestTSCOffset returns guest TSC - host TSC: KVM's per-vCPU TSC offset
// attribute where the host has it, else an estimate from reading the
// guest's TSC MSR between two host TSC reads.
func guestTSCOffset(v *kvm.VCPU) (int64, error) {
	if ok, err := v.HasDeviceAttr(kvm.VCPUTSCCtrl, kvm.VCPUTSCOffset); err == nil && ok {
		if off, err := v.GetDeviceAttr(kvm.VCPUTSCCtrl, kvm.VCPUTSCOffset); err == nil {
			return int64(off), nil
		}
	}
	before := hyperv.HostTSC()
	tsc, err := v.GetMSR(msrIA32TSC)
	after := hyperv.HostTSC()
	if err != nil {
		return 0, fmt.Errorf("guest TSC offset: %w", err)
	}
	return int64(tsc - (before/2 + after/2)), nil
}

// hypercallPortDevice claims the hypercall port on the PIO bus; the
// dispatcher hands the port's writes to the partition with the calling
// vCPU, which a bus device does not know.
type hypercallPortDevice struct{}

func (hypercallPortDevice) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}

func (hypercallPortDevice) Write(uint64, []byte) {}

// Summary is the run's Hyper-V summary, for the Result and the report.
func (h *hvMachine) Summary() any {
	if err := h.part.FlushTrace(); err != nil {
		h.m.log.Warn("Hyper-V trace", "err", err)
	}
	if h.m.vmbus != nil {
		return hypervWithVMBus{Summary: h.part.Summary(), VMBus: h.m.vmbus.summary()}
	}
	return h.part.Summary()
}

// hypercall runs on vCPU vcpu's thread, in its port-write exit.
func (h *hvMachine) hypercall(vcpu int, port uint64) error {
	if port == hyperv.SignalPort {
		return h.part.SignalFallback(vcpu, h.m.vcpus[vcpu].kvm)
	}
	return h.part.Hypercall(vcpu, h.m.vcpus[vcpu].kvm)
}

// beforeRun is the vCPU loop's hook before each KVM_RUN: clear a kick's
// immediate_exit, do requested TLB flushes and the partition's per-vCPU work.
func (h *hvMachine) beforeRun(v *vcpu) error {
	h.statsOnce.Do(func() { go h.logActivity() })
	if vb := h.m.vmbus; vb != nil {
		vb.beating.Do(func() { go vb.beat(h.m) })
	}
	// A kick sets its request before immediate_exit, so clearing it here,
	// before looking at the requests, loses none.
	v.kvm.RunData().ImmediateExit = 0
	if err := h.serviceFlushes(v); err != nil {
		return err
	}
	if h.part.NeedsProcess(v.id) {
		if err := h.part.Process(v.id, v.kvm); err != nil {
			return err
		}
	}
	h.part.EnterGuest(v.id)
	return nil
}

// Interrupt implements hyperv.Host: a fixed, edge-triggered MSI to the
// vCPU's local APIC (APIC ID = vCPU index).
func (h *hvMachine) Interrupt(vcpu int, vector uint8) error {
	if vcpu < 0 || vcpu >= len(h.m.vcpus) {
		return fmt.Errorf("interrupt for vCPU %d of %d", vcpu, len(h.m.vcpus))
	}
	_, err := h.m.vm.SignalMSI(0xfee00000|uint32(vcpu)<<12, 0, uint32(vector))
	return err
}

// GuestTSC implements hyperv.TSCReader: the vCPU's own TSC, read on its
// thread (the partition asks at that vCPU's MSR exits).
func (h *hvMachine) GuestTSC(vcpu int) (uint64, error) {
	return h.m.vcpus[vcpu].kvm.GetMSR(msrIA32TSC)
}

// SetKernelSINT implements hyperv.KernelAutoEOI: KVM_CAP_HYPERV_SYNIC2
// gives the vCPU KVM's SynIC (the guest's accesses still exit to vmm: the
// MSR filter denies them to KVM), and a host-initiated KVM_SET_MSRS, which
// the filter does not apply to, sets the SINT there.
func (h *hvMachine) SetKernelSINT(vcpu, sint int, value uint64) error {
	if sint < 0 || sint > hyperv.MSRSINT15-hyperv.MSRSINT0 {
		return fmt.Errorf("SINT %d out of range", sint)
	}
	if err := h.enableKernelSynIC(vcpu); err != nil {
		return err
	}
	return h.SetKernelSynIC(vcpu, hyperv.MSRSINT0+uint32(sint), value)
}

// enableKernelSynIC gives vCPU vcpu KVM's SynIC, once. SYNIC2 rather than
// SYNIC: KVM then never clears the message and event pages, which are vmm's.
func (h *hvMachine) enableKernelSynIC(vcpu int) error {
	if h.synic[vcpu] {
		return nil
	}
	if err := h.m.vcpus[vcpu].kvm.EnableCap(kvm.CapHyperVSynIC2, 0); err != nil {
		return fmt.Errorf("enable KVM's SynIC on vCPU %d: %w", vcpu, err)
	}
	h.synic[vcpu] = true
	return nil
}

// SetKernelSynIC implements hyperv.KernelSynIC: a host-initiated
// KVM_SET_MSRS, which the MSR filter does not apply to.
func (h *hvMachine) SetKernelSynIC(vcpu int, msr uint32, value uint64) error {
	e := [1]kvm.MSREntry{{Index: msr, Data: value}}
	if err := h.m.vcpus[vcpu].kvm.SetMSRs(e[:]); err != nil {
		return fmt.Errorf("%#x in KVM's SynIC: %w", msr, err)
	}
	return nil
}

// refTime is the reference time the guest reads, in 100 ns units (for
// VMBus time sync).
func (h *hvMachine) refTime() uint64 { return h.ref.Now() }

// kernelRefClock is the partition's clock with kernel timers: Now is KVM's
// reference time (kvmclock / 100, which KVM's TIME_REF_COUNT and TSC page
// follow), what the guest reads then and what the trace must show; timers
// (auto-EOI retries) still run on the TSC clock.
type kernelRefClock struct {
	*hyperv.TSCClock
	vm *kvm.VM
}

func (c kernelRefClock) Now() uint64 {
	if ns, err := c.vm.GetClock(); err == nil {
		return ns / 100
	}
	return c.TSCClock.Now()
}

// Kick implements hyperv.Host.
func (h *hvMachine) Kick(vcpu int) {
	if vcpu >= 0 && vcpu < len(h.m.vcpus) {
		h.m.vcpus[vcpu].kick()
	}
}

// Runtime implements hyperv.Host: the calling vCPU thread's CPU time,
// guest time included.
func (h *hvMachine) Runtime(int) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano()) / 100
}

// Reset implements hyperv.Host.
func (h *hvMachine) Reset() {
	h.m.latch.Stop(StopReason{Kind: StopReset, Source: "hyperv", Detail: "guest wrote the Hyper-V reset MSR"})
}

// Crash implements hyperv.Host: the guest reported a crash through the
// crash MSRs (Linux does so from its panic notifier).
func (h *hvMachine) Crash(p [5]uint64) {
	h.m.latch.Stop(StopReason{Kind: StopPanic, Source: "hyperv",
		Detail: fmt.Sprintf("guest crash (Hyper-V crash MSRs) P0=%#x P1=%#x P2=%#x P3=%#x P4=%#x", p[0], p[1], p[2], p[3], p[4])})
}

// errStopped ends a TLB flush wait when the VM stops.
var errStopped = errors.New("VM stopping")

// FlushTLB implements hyperv.Host: every target vCPU flushes its own TLB
// on its own thread before it next enters the guest; the caller waits for
// them all, doing flushes others ask of it meanwhile, so two vCPUs flushing
// each other cannot deadlock.
func (h *hvMachine) FlushTLB(caller int, vcpus []int) error {
	done := make(chan struct{}, len(vcpus))
	n := 0
	for _, t := range vcpus {
		if t == caller {
			if err := flushGuestTLB(h.m.vcpus[caller].kvm); err != nil {
				return err
			}
			continue
		}
		r := h.tlb[t]
		r.mu.Lock()
		r.waiters = append(r.waiters, done)
		r.mu.Unlock()
		select {
		case r.wake <- struct{}{}:
		default:
		}
		h.m.vcpus[t].kick()
		n++
	}
	self := h.m.vcpus[caller]
	for n > 0 {
		select {
		case <-done:
			n--
		case <-h.tlb[caller].wake:
			if err := h.serviceFlushes(self); err != nil {
				return err
			}
		case <-h.m.latch.Done():
			return errStopped
		}
	}
	return nil
}

// serviceFlushes does the flushes other vCPUs asked of v. On v's thread.
func (h *hvMachine) serviceFlushes(v *vcpu) error {
	r := h.tlb[v.id]
	r.mu.Lock()
	w := r.waiters
	r.waiters = nil
	r.mu.Unlock()
	if len(w) == 0 {
		return nil
	}
	err := flushGuestTLB(v.kvm)
	for _, c := range w {
		c <- struct{}{}
	}
	return err
}

// flushGuestTLB makes KVM drop v's guest TLB: KVM_SET_SREGS with a changed
// CR4 resets the vCPU's MMU context, which flushes its translations (KVM
// offers userspace no direct flush); the second call restores CR4.
func flushGuestTLB(v *kvm.VCPU) error {
	s, err := v.GetSregs()
	if err != nil {
		return fmt.Errorf("TLB flush: %w", err)
	}
	t := s
	t.CR4 ^= cr4PGE
	if err := v.SetSregs(t); err != nil {
		return fmt.Errorf("TLB flush: %w", err)
	}
	if err := v.SetSregs(s); err != nil {
		return fmt.Errorf("TLB flush: %w", err)
	}
	return nil
}

// After its console said "Kernel panic", a guest with the Hyper-V crash
// MSRs may still report P0-P4 through them: Linux prints that line and its
// stack dump first and runs its panic notifiers (which write the MSRs)
// after. vmm waits while the console keeps printing, until it has been
// quiet for panicGrace (a slow host prints the dump for seconds: the nested
// test host took over 2 s), and panicMax in all (a guest printing forever).
const (
	panicGrace = 2 * time.Second
	panicMax   = 30 * time.Second
)

// consolePanic stops the VM for a panic seen on the console, or, when the
// guest may still report the crash through the Hyper-V crash MSRs, at the
// latest after panicGrace; the crash MSRs' stop reason carries P0-P4.
func (m *Machine) consolePanic(line string) {
	r := StopReason{Kind: StopPanic, Source: "console", Detail: line}
	if m.hv == nil || !m.cfg.HyperV.Crash {
		m.latch.Stop(r)
		return
	}
	m.log.Info("guest panicked; waiting for its Hyper-V crash report", "quiet", panicGrace, "max", panicMax)
	start := time.Now()
	var wait func(seen uint64)
	wait = func(seen uint64) {
		time.AfterFunc(panicGrace, func() {
			if now := m.consoleBytes.Load(); now != seen && time.Since(start) < panicMax {
				wait(now)
				return
			}
			m.latch.Stop(r)
		})
	}
	wait(m.consoleBytes.Load())
}

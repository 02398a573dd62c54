package hyperv

// Kernel timers (--hyperv ...,kernel-timers): on a host whose KVM has
// Hyper-V (KVM_CAP_HYPERV, _SYNIC2, _TIME), the synthetic timers are KVM's.
// The guest's STIMERn_CONFIG/COUNT accesses, TIME_REF_COUNT and
// REFERENCE_TSC pass vmm's MSR filter (Features.KernelMSRs), so a timer
// WRMSR never leaves the kernel, and KVM's timers count against KVM's own
// reference clock, which the guest reads.
//
// KVM delivers a timer through its own SynIC of the vCPU (enabled at
// creation), which must know the SynIC state. vmm keeps the SynIC MSRs in
// its filter, as in userspace mode (the trace, the report and VMBus stay as
// they are), and mirrors each guest write of SCONTROL, SIEFP, SIMP, SINTx
// and EOM with a host-initiated KVM_SET_MSRS, which KVM's MSR filter does
// not apply to: host writes of SIMP and SIEFP do not clear the pages there
// (vmm already did), and EOM makes KVM retry the timer messages it found
// the slot busy for (kvm_hv_notify_acked_sint). An EOI of a SINT vector
// reaches KVM's SynIC from its LAPIC, as for QEMU.
//
// KVM writes a timer message into the SIMP page on the vCPU's own thread,
// inside KVM_RUN, with no lock vmm could share; vmm's VMBus messages may go
// to the same slot (Linux sends its message-mode timer on the VMBus SINT).
// So, in this mode, vmm writes a vCPU's message page only while that vCPU
// is outside KVM_RUN (EnterGuest and LeaveGuest bracket it under the VP's
// lock): a post for a vCPU in the guest kicks it out and the bus retries
// from Process on its thread, as QEMU posts on the vCPU's own thread
// (hw/hyperv/hyperv.c, async_run_on_cpu). Event flags need none of this:
// KVM never writes the event page.

// KernelSynIC is implemented by hosts that can give a vCPU's in-kernel
// SynIC the value of one of its MSRs (the vCPU's SynIC already on).
type KernelSynIC interface {
	SetKernelSynIC(vcpu int, msr uint32, value uint64) error
}

// mirrored reports whether msr's guest writes go to KVM's SynIC too.
func mirrored(msr uint32) bool {
	switch {
	case msr == MSRSControl, msr == MSRSIEFP, msr == MSRSIMP, msr == MSREOM:
		return true
	}
	return msr >= MSRSINT0 && msr <= MSRSINT15
}

// mirrorKernel tells v's in-kernel SynIC of a guest write vmm accepted. On
// v's thread; callers hold v.mu.
func (p *Partition) mirrorKernel(v *vp, msr uint32, value uint64) {
	if !p.kernel || !mirrored(msr) {
		return
	}
	if err := p.host.(KernelSynIC).SetKernelSynIC(v.index, msr, value); err != nil {
		// KVM accepts every value vmm accepts; a failure is a broken
		// host, which this VM's timers cannot survive silently.
		if v.mirrorLogs.Add(1) == 1 {
			p.log.Error("Hyper-V kernel timers: KVM's SynIC refused a write; timer delivery may stop",
				"vcpu", v.index, "msr", msrName(msr), "value", hex(value), "err", err)
		}
		return
	}
	if msr >= MSRSINT0 && msr <= MSRSINT15 && value&sintAutoEOI != 0 {
		v.aeoiWhere = aeoiKernel
	}
}

// EnterGuest is called on vCPU vcpu's thread right before KVM_RUN and
// LeaveGuest right after it. In kernel-timers mode they bracket the time
// KVM may write the vCPU's message page (see above); else they do nothing.
func (p *Partition) EnterGuest(vcpu int) { p.setInGuest(vcpu, true) }

// LeaveGuest: see EnterGuest.
func (p *Partition) LeaveGuest(vcpu int) { p.setInGuest(vcpu, false) }

func (p *Partition) setInGuest(vcpu int, in bool) {
	if !p.kernel {
		return // on every exit of every vCPU: nothing more without kernel timers
	}
	v := p.vp(vcpu)
	if v == nil {
		return
	}
	v.mu.Lock()
	v.inGuest = in
	v.mu.Unlock()
}

// deferPost reports whether a message for v must wait until v leaves the
// guest; then it asks v's thread to have the bus retry. Callers hold v.mu.
func (p *Partition) deferPost(v *vp) bool {
	if !p.kernel || !v.inGuest {
		return false
	}
	v.busRetry = true
	v.need.Store(true)
	p.host.Kick(v.index)
	return true
}

// takeBusRetry reports and clears a deferred post of v.
func (p *Partition) takeBusRetry(v *vp) bool {
	if !p.kernel {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	r := v.busRetry
	v.busRetry = false
	return r
}

// KernelTimers reports whether the partition's timers are KVM's.
func (p *Partition) KernelTimers() bool { return p.kernel }

package hyperv

import (
	"fmt"

	"github.com/vmmdev/vmm/vmm/kvm"
)

// Auto-EOI: a SINT with bit 17 set asks for its interrupt to be EOI'd when
// the guest accepts it, and the guest then never writes the EOI. KVM's LAPIC
// does that itself, as it delivers a vector, for the vectors its own SynIC
// marks auto-EOI. vmm advertises DeprecatingAEOI (Linux then never asks);
// for a guest that asks anyway, two ways:
//
//   - In KVM (KernelAutoEOI hosts): at the guest's first auto-EOI SINT the
//     vCPU's in-kernel SynIC is switched on and told every SINT write from
//     then on, those without auto-EOI masked, so that KVM knows the
//     auto-EOI vectors and nothing else (it ignores masked SINTs; on the
//     EOI of an unmasked one's vector it only looks for its own timers and
//     routes, of which it has none). The guest's SynIC MSR accesses still
//     all exit to vmm, which traces and counts them and delivers every
//     message; delivery is then one MSI, as for any other SINT.
//   - In vmm, where that fails (a KVM built without Hyper-V): after raising
//     such a vector it kicks the vCPU, and on the vCPU's own thread Process
//     clears the vector's in-service bit once the LAPIC shows it accepted
//     (in ISR, out of IRR), kicking again until then. The guest's handler
//     may thus run a little while with the bit set, which only delays
//     lower-priority interrupts; a vector never stays blocked. That costs a
//     signal, KVM_GET_LAPIC and KVM_SET_LAPIC per message, and a retry timer.

// KernelAutoEOI is implemented by hosts whose in-kernel LAPIC can do the
// auto-EOI itself (see above).
type KernelAutoEOI interface {
	// SetKernelSINT gives vCPU vcpu's in-kernel SynIC the value of SINT
	// sint, switching that SynIC on first; called on that vCPU's thread.
	SetKernelSINT(vcpu, sint int, value uint64) error
}

// Where a vCPU's auto-EOI happens (vp.aeoiWhere).
const (
	aeoiUndecided = iota // no auto-EOI SINT yet
	aeoiKernel
	aeoiVMM
)

// mirrorSINT tells the in-kernel SynIC of v SINT sint's new value, from
// the first auto-EOI SINT on. On v's thread; callers hold v.mu.
func (p *Partition) mirrorSINT(v *vp, sint int, value uint64) {
	k, ok := p.host.(KernelAutoEOI)
	if !ok || v.aeoiWhere == aeoiVMM || v.aeoiWhere == aeoiUndecided && value&sintAutoEOI == 0 {
		return
	}
	kv := value
	if kv&sintAutoEOI == 0 {
		kv |= sintMasked
	}
	if err := k.SetKernelSINT(v.index, sint, kv); err != nil {
		// From now on vmm clears the in-service bits; one the kernel
		// cleared already is one Process finds gone, and drops.
		p.log.Warn("Hyper-V auto-EOI in KVM's LAPIC unavailable; vmm does it", "vcpu", v.index, "err", err)
		v.aeoiWhere = aeoiVMM
		return
	}
	if v.aeoiWhere == aeoiUndecided {
		p.log.Debug("Hyper-V auto-EOI in KVM's LAPIC", "vcpu", v.index)
	}
	v.aeoiWhere = aeoiKernel
}

// aeoiRetry is how long (100 ns units: 200 µs) to wait before looking
// again at a vector the guest has not accepted yet.
const aeoiRetry = 2000

// LAPIC is the in-kernel local APIC of the calling vCPU (*kvm.VCPU).
type LAPIC interface {
	GetLAPIC() (kvm.LAPICState, error)
	SetLAPIC(kvm.LAPICState) error
}

// LAPIC register pages: ISR and IRR are eight 32-bit registers 16 bytes apart.
const (
	lapicISR = 0x100
	lapicIRR = 0x200
)

func lapicBit(s *kvm.LAPICState, base int, vec uint8) bool {
	return s.Reg(base+int(vec/32)*16)&(1<<(vec%32)) != 0
}

// noteAutoEOI counts an auto-EOI vector raised on v and, unless KVM does
// the EOI, records it for Process. Callers hold v.mu.
func (p *Partition) noteAutoEOI(v *vp, vec uint8) {
	if v.aeoiWhere == aeoiKernel {
		p.stats.autoEOI(v.index)
		return
	}
	v.aeoi[vec/64] |= 1 << (vec % 64)
	v.need.Store(true)
	p.host.Kick(v.index)
}

// NeedsProcess reports, cheaply, whether Process has work for vcpu.
func (p *Partition) NeedsProcess(vcpu int) bool {
	v := p.vp(vcpu)
	return v != nil && v.need.Load()
}

// Process does the work that must happen on vCPU vcpu's own thread, before
// it re-enters the guest: the auto-EOI of accepted SINT vectors, and in
// kernel-timers mode the bus messages that waited for it (kernel.go).
func (p *Partition) Process(vcpu int, lapic LAPIC) error {
	v := p.vp(vcpu)
	if v == nil || !v.need.Swap(false) {
		return nil
	}
	if p.takeBusRetry(v) {
		if b := p.bus.get(); b != nil {
			b.EOM()
		}
	}
	return p.processAutoEOI(v, vcpu, lapic)
}

func (p *Partition) processAutoEOI(v *vp, vcpu int, lapic LAPIC) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.aeoi == [4]uint64{} {
		return nil
	}
	st, err := lapic.GetLAPIC()
	if err != nil {
		v.need.Store(true)
		return fmt.Errorf("hyperv auto-EOI on vCPU %d: %w", vcpu, err)
	}
	left, changed := clearAccepted(&st, &v.aeoi)
	if changed {
		if err := lapic.SetLAPIC(st); err != nil {
			return fmt.Errorf("hyperv auto-EOI on vCPU %d: %w", vcpu, err)
		}
		p.stats.autoEOI(vcpu)
	}
	if left {
		if v.aeoiKick != nil {
			v.aeoiKick.Stop()
		}
		if v.aeoiRetry == nil {
			v.aeoiRetry = func(uint64) {
				v.need.Store(true)
				p.host.Kick(v.index)
			}
		}
		v.aeoiKick = p.clock.AfterFunc(aeoiRetry, v.aeoiRetry, 0)
	}
	return nil
}

// clearAccepted clears the in-service bit of each vector in pending that
// the LAPIC has accepted, and drops vectors that are neither requested nor
// in service (the guest EOI'd them itself). It reports whether vectors are
// still waiting for acceptance and whether st changed.
func clearAccepted(st *kvm.LAPICState, pending *[4]uint64) (left, changed bool) {
	for w := range pending {
		for b := 0; b < 64; b++ {
			if pending[w]&(1<<b) == 0 {
				continue
			}
			vec := uint8(w*64 + b)
			inIRR, inISR := lapicBit(st, lapicIRR, vec), lapicBit(st, lapicISR, vec)
			switch {
			case inIRR && !inISR:
				left = true
				continue
			case inISR:
				off := lapicISR + int(vec/32)*16
				st.SetReg(off, st.Reg(off)&^(1<<(vec%32)))
				changed = true
				// Requested again while in service: the new one is
				// accepted after this EOI and needs its own.
				if inIRR {
					left = true
					continue
				}
			}
			pending[w] &^= 1 << b
		}
	}
	return left, changed
}

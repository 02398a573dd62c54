package hyperv

import (
	"fmt"

	"github.com/vmmdev/vmm/vmm/kvm"
)

// Auto-EOI: a SINT with bit 17 set asks for its interrupt to be EOI'd when
// the guest accepts it, and the guest then never writes the EOI. KVM's LAPIC
// does that only inside its own Hyper-V code, which userspace cannot use.
// vmm advertises DeprecatingAEOI (Linux then never asks), and for a guest
// that asks anyway it does the EOI itself: after raising such a vector it
// kicks the vCPU, and on the vCPU's own thread Process clears the vector's
// in-service bit once the LAPIC shows it accepted (in ISR, out of IRR),
// kicking again until then. The guest's handler may thus run a little while
// with the bit set, which only delays lower-priority interrupts; a vector
// never stays blocked.

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

// noteAutoEOI records vec for Process. Callers hold v.mu.
func (p *Partition) noteAutoEOI(v *vp, vec uint8) {
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
// it re-enters the guest: the auto-EOI of accepted SINT vectors.
func (p *Partition) Process(vcpu int, lapic LAPIC) error {
	v := p.vp(vcpu)
	if v == nil || !v.need.Swap(false) {
		return nil
	}
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
		v.aeoiKick = p.clock.AfterFunc(aeoiRetry, func(uint64) {
			v.need.Store(true)
			p.host.Kick(vcpu)
		}, 0)
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

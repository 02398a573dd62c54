package hyperv

import "encoding/binary"

// STIMERn_CONFIG bits (TLFS "Synthetic Timer Configuration Register").
const (
	stimerEnable     = 1 << 0
	stimerPeriodic   = 1 << 1
	stimerLazy       = 1 << 2
	stimerAutoEnable = 1 << 3
	stimerVectorShft = 4
	stimerDirect     = 1 << 12
	stimerSintShift  = 16
	stimerValidBits  = stimerEnable | stimerPeriodic | stimerLazy | stimerAutoEnable |
		0xff<<stimerVectorShft | stimerDirect | 0xf<<stimerSintShift
	// minPeriod bounds periodic timers (100 ns units: 100 µs) so a guest
	// cannot make the host spin on timer callbacks.
	minPeriod = 1000
)

// stimer is one synthetic timer. Fields are guarded by the owning vp's mu.
type stimer struct {
	index  int
	config uint64
	count  uint64
	// exp is the reference time of the next expiry; 0 when not armed.
	exp uint64
	// gen identifies the armed callback, so a stopped timer's late
	// callback does nothing.
	gen   uint64
	timer Timer
	// fire is the clock's callback, made on the first arm and passed each
	// arm's gen: guests re-arm at every tick.
	fire func(gen uint64)
	// pending: expired, but the message is not delivered yet.
	pending bool
	// expired counts expiries, delivered counts delivered notifications.
	expired, delivered uint64
}

func (t *stimer) enabled() bool  { return t.config&stimerEnable != 0 }
func (t *stimer) periodic() bool { return t.config&stimerPeriodic != 0 }
func (t *stimer) direct() bool   { return t.config&stimerDirect != 0 }
func (t *stimer) sint() int      { return int(t.config>>stimerSintShift) & 0xf }
func (t *stimer) vector() uint8  { return uint8(t.config >> stimerVectorShft) }

// stop disarms the timer and forgets a pending expiry.
func (t *stimer) stop() {
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	t.gen++
	t.exp = 0
	t.pending = false
}

func (p *Partition) writeSTimer(v *vp, msr uint32, value uint64) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	t := &v.timers[(msr-MSRSTimer0Config)/2]
	if (msr-MSRSTimer0Config)%2 == 0 {
		if value&^uint64(stimerValidBits) != 0 {
			return false
		}
		if value&stimerDirect != 0 && !p.f.STimerDirect {
			return false
		}
		// A message-mode timer needs a SINT: enabling with SINT 0 is
		// ignored, as KVM does.
		if value&stimerEnable != 0 && value&stimerDirect == 0 && (value>>stimerSintShift)&0xf == 0 {
			value &^= stimerEnable
		}
		t.stop()
		t.config = value
	} else {
		t.stop()
		t.count = value
		if value == 0 {
			t.config &^= stimerEnable
		} else if t.config&stimerAutoEnable != 0 {
			t.config |= stimerEnable
		}
	}
	p.stats.timerConfig(v.index, t)
	// A zero count never expires (KVM starts only timers with a count).
	if t.enabled() && t.count != 0 {
		// A one-shot at or before the vCPU's last sampled time is due
		// now whatever its TSC reads: the sample's ioctl is saved for
		// timers whose wait depends on it.
		if t.periodic() || t.count > v.sampled.Load() {
			p.sample(v.index)
		}
		p.startTimer(v, t, p.guestNow(v))
	}
	return true
}

// startTimer arms t from reference time now. Callers hold v.mu.
func (p *Partition) startTimer(v *vp, t *stimer, now uint64) {
	if t.periodic() {
		period := max(t.count, minPeriod)
		if t.exp != 0 && now >= t.exp {
			// Keep the phase: the next expiry on the period's grid after now.
			t.exp = now + period - (now-t.exp)%period
		} else {
			t.exp = now + period
		}
	} else {
		t.exp = t.count
		if t.exp <= now {
			// One-shot in the past: expire at once (TLFS).
			p.expire(v, t, now)
			return
		}
	}
	t.gen++
	if v.armLogs.Add(1) <= maxArmLogs {
		// The first few show how far ahead of vmm's clock the guest sets
		// its timers: a clock out of step with the guest's shows here.
		p.log.Debug("Hyper-V timer armed", "vp", v.index, "timer", t.index, "periodic", t.periodic(),
			"count", t.count, "now", now, "wait_100ns", t.exp-now)
	}
	p.arm(v, t, t.exp-now)
}

// arm has the clock call timerFired for t's current gen after d. Callers
// hold v.mu.
func (p *Partition) arm(v *vp, t *stimer, d uint64) {
	if t.fire == nil {
		t.fire = func(gen uint64) { p.timerFired(v, t, gen) }
	}
	t.timer = p.clock.AfterFunc(d, t.fire, t.gen)
}

// maxArmLogs bounds the debug lines startTimer writes per vCPU.
const maxArmLogs = 10

// timerFired runs on the clock's goroutine.
func (p *Partition) timerFired(v *vp, t *stimer, gen uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if t.gen != gen || !t.enabled() {
		return
	}
	t.timer = nil
	now := p.guestNow(v)
	if now < t.exp {
		// The host timer ran early relative to the reference clock.
		t.gen++
		p.arm(v, t, t.exp-now)
		return
	}
	p.expire(v, t, now)
}

// expire notifies the guest of t's expiry and rearms a periodic timer.
// Callers hold v.mu.
func (p *Partition) expire(v *vp, t *stimer, now uint64) {
	t.expired++
	t.pending = true
	p.deliver(v, t, now)
}

// deliver tries to notify the guest of a pending expiry: a plain APIC
// interrupt in direct mode, else a timer message in the SINT's slot. An
// undelivered message stays pending until EOM or a SynIC change retries
// it; a periodic timer is not rearmed meanwhile (as KVM).
func (p *Partition) deliver(v *vp, t *stimer, now uint64) {
	ok := false
	if t.direct() {
		if err := p.host.Interrupt(v.index, t.vector()); err != nil {
			p.log.Warn("Hyper-V direct timer interrupt failed", "vcpu", v.index, "timer", t.index, "err", err)
		} else {
			ok = true
		}
	} else {
		var payload [timerPayloadLen]byte
		le := binary.LittleEndian
		le.PutUint32(payload[0:], uint32(t.index))
		le.PutUint64(payload[8:], t.exp)
		le.PutUint64(payload[16:], now)
		ok = p.postMessage(v, t.sint(), msgTimerExpired, payload[:])
	}
	if !ok {
		return
	}
	t.pending = false
	t.delivered++
	if t.periodic() {
		p.startTimer(v, t, now)
	} else {
		t.config &^= stimerEnable
		t.exp = 0
	}
}

// retryTimers retries v's undelivered timer messages. Callers hold v.mu.
func (p *Partition) retryTimers(v *vp) {
	for i := range v.timers {
		t := &v.timers[i]
		if t.pending && t.enabled() {
			p.deliver(v, t, p.guestNow(v))
		}
	}
}

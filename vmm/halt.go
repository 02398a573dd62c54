package vmm

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/vmm/kvm"
)

// A guest that executes HLT with interrupts disabled never leaves KVM_RUN:
// the in-kernel LAPIC blocks the vCPU until an interrupt it will never take.
// vmm detects this instead of waiting for --timeout: every haltPollPeriod the
// watcher signals each vCPU thread, which leaves KVM_RUN with EINTR and reads
// its own MP state and RFLAGS (only the vCPU's thread may: the ioctls block
// while another thread is in KVM_RUN). When every vCPU is halted with IF=0 or
// was never started (an AP waiting for a SIPI nobody can send) for two rounds
// in a row, the VM ends with StopHalted (exit code 3).
const haltPollPeriod = 250 * time.Millisecond

// Liveness a vCPU reports for a poke.
const (
	livenessUnknown int32 = iota
	livenessRunning
	livenessDead
)

const rflagsIF = 1 << 9

// answerPoke records the vCPU's liveness if the watcher asked for it. After
// an ordinary exit the vCPU was plainly running; after EINTR it may be
// blocked in HLT, which only its MP state tells.
func (v *vcpu) answerPoke(interrupted bool) {
	if !v.poke.Load() {
		return
	}
	v.poke.Store(false)
	if !interrupted {
		v.liveness.Store(livenessRunning)
		return
	}
	v.liveness.Store(v.probeLiveness())
}

func (v *vcpu) probeLiveness() int32 {
	st, err := v.kvm.GetMPState()
	if err != nil {
		return livenessUnknown
	}
	switch st {
	case kvm.MPStateUninitialized, kvm.MPStateInitReceived:
		return livenessDead
	case kvm.MPStateHalted:
		regs, err := v.kvm.GetRegs()
		if err == nil && regs.RFLAGS&rflagsIF == 0 {
			return livenessDead
		}
	}
	return livenessRunning
}

// watchHalted starts the halt watcher; the returned function stops it and
// waits for it to finish.
func (m *Machine) watchHalted() (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(haltPollPeriod)
		defer t.Stop()
		deadRounds := 0
		for {
			select {
			case <-quit:
				return
			case <-m.latch.Done():
				return
			case <-t.C:
			}
			if allDead(m.vcpus) {
				deadRounds++
			} else {
				deadRounds = 0
			}
			if deadRounds >= 2 {
				m.latch.Stop(StopReason{Kind: StopHalted, Source: "vmm",
					Detail: "every vCPU halted with interrupts disabled; nothing can wake the guest"})
				return
			}
			for _, v := range m.vcpus {
				v.liveness.Store(livenessUnknown)
				v.poke.Store(true)
				if tid := v.tid.Load(); tid != 0 {
					_ = unix.Tgkill(unix.Getpid(), int(tid), kickSignal)
				}
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

func allDead(vs []*vcpu) bool {
	for _, v := range vs {
		if v.liveness.Load() != livenessDead {
			return false
		}
	}
	return len(vs) > 0
}

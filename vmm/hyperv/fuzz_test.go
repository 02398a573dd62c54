package hyperv

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"
)

// FuzzHypercall feeds arbitrary input values, parameters and input pages:
// the guest controls all of them, and no combination may panic.
func FuzzHypercall(f *testing.F) {
	f.Add(input(CallSendIPI, true, 0, 0), uint64(0x41), uint64(3), []byte{})
	f.Add(input(CallSendIPIEx, false, 1, 0), uint64(0x1000), uint64(0), []byte{0x41, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5})
	f.Add(input(CallFlushVAListEx, false, 64, 4000), uint64(0x1ff8), uint64(0), []byte{0xff})
	f.Add(input(CallPostMessage, false, 0, 0), uint64(0x1000), uint64(0), []byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xff})
	f.Add(uint64(0xffffffffffffffff), uint64(0xffffffffffffffff), uint64(0), []byte{})
	f.Fuzz(func(t *testing.T, value, p1, p2 uint64, page []byte) {
		tp := newTestPartition(t, "all", 3)
		copy(tp.mem.b[0x1000:0x3000], page)
		r := tp.Call(0, value, p1, p2)
		if uint16(r) == StatusSuccess {
			in, _ := decodeInput(value, p1, p2)
			if repsDone(r) != int(in.repCount) {
				t.Fatalf("success with %d of %d reps", repsDone(r), in.repCount)
			}
		}
	})
}

// FuzzMSRSequence replays arbitrary MSR writes and reads, with timers
// advancing between them.
func FuzzMSRSequence(f *testing.F) {
	seed := func(ops ...uint64) []byte {
		var b []byte
		for _, o := range ops {
			b = binary.LittleEndian.AppendUint64(b, o)
		}
		return b
	}
	f.Add(seed(MSRSControl, 1, MSRSIMP, 0x10001, MSRSINT0+2, 0x20030, MSRSTimer0Config, 0x2000b, MSRSTimer0Config+1, 50, MSREOM, 0))
	f.Add(seed(MSRGuestOSID, 1, MSRHypercall, 0x5001, MSRReferenceTSC, 0xfffff001, MSRCrashCtl, 1<<63))
	f.Fuzz(func(t *testing.T, ops []byte) {
		tp := newTestPartition(t, "all", 2)
		for len(ops) >= 16 {
			op := binary.LittleEndian.Uint64(ops)
			val := binary.LittleEndian.Uint64(ops[8:])
			ops = ops[16:]
			msr := FilterBase + uint32(op%FilterCount)
			vcpu := int(op>>32) % 3 // includes a vCPU that does not exist
			if op&(1<<40) != 0 {
				tp.ReadMSR(vcpu, msr)
			} else {
				tp.WriteMSR(vcpu, msr, val)
			}
			tp.clock.Advance(op >> 48)
			_ = tp.Process(vcpu, &fakeLAPIC{})
		}
		_ = tp.Summary()
	})
}

// FuzzParseFeatures: --hyperv is user input; any list parses or fails
// with ErrFeatures, and what parses satisfies the dependencies.
func FuzzParseFeatures(f *testing.F) {
	for _, s := range []string{"all", "windows", "relaxed,vpindex,spinlocks=0x1fff", "vendor-id=KVMKVMKVM", "stimer",
		"all,ipi=off", ",,", "spinlocks=99999999999", "kvm-signature,vpindex=on", "windows,vapic=off,vapic=auto",
		"vapic=on,time,tsc-page=off"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		feat, err := ParseFeatures(list)
		if err != nil {
			if !errors.Is(err, ErrFeatures) {
				t.Fatalf("%q: error %v is not ErrFeatures", list, err)
			}
			return
		}
		if err := feat.Check(); err != nil {
			t.Fatalf("%q parsed but fails Check: %v", list, err)
		}
		if feat.Enabled() && len(feat.Leaves(2)) != 7 {
			t.Fatalf("%q: %d leaves", list, len(feat.Leaves(2)))
		}
		// Round trip: the same guest-visible result (a tsc-page=off
		// without time says nothing and is not repeated).
		if again, err := ParseFeatures(feat.String()); feat.Enabled() && (err != nil || again.String() != feat.String() ||
			!slices.Equal(again.Leaves(2), feat.Leaves(2)) || !slices.Equal(again.KernelMSRs(), feat.KernelMSRs())) {
			t.Fatalf("%q: String %q does not round-trip: %+v, %v", list, feat.String(), again, err)
		}
		if g, err := feat.ForHost(false); err != nil && !errors.Is(err, ErrNoKernelAPIC) || err == nil && g.VAPIC {
			t.Fatalf("%q: on a host without in-kernel Hyper-V: %+v, %v", list, g, err)
		}
	})
}

package hyperv

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/vmm/kvm"
)

func input(code uint16, fast bool, varHdr, reps int) uint64 {
	v := uint64(code) | uint64(varHdr)<<hypercallVarHdrShift | uint64(reps)<<hypercallRepCntShift
	if fast {
		v |= hypercallFastBit
	}
	return v
}

func status(r uint64) uint16 { return uint16(r) }
func repsDone(r uint64) int  { return int(r>>32) & 0xfff }

func TestHypercallCodes(t *testing.T) {
	tp := newTestPartition(t, "all", 4)
	require.Equal(t, uint16(StatusSuccess), status(tp.Call(0, input(CallNotifyLongSpin, false, 0, 0), 0, 0)))
	require.Equal(t, uint16(StatusInvalidHypercallCode), status(tp.Call(0, input(0x99, false, 0, 0), 0, 0)))
	require.Equal(t, uint16(StatusInvalidHypercallCode), status(tp.Call(0, input(0x46, false, 0, 0), 0, 0)),
		"HvGetPartitionId is not offered")
	require.Equal(t, uint16(StatusInvalidInput), status(tp.Call(0, input(CallNotifyLongSpin, false, 0, 0)|1<<30, 0, 0)),
		"reserved input bits")
	require.Equal(t, uint16(StatusInvalidInput), status(tp.Call(0, input(CallNotifyLongSpin, false, 0, 2), 0, 0)),
		"rep count on a simple call")
	require.Equal(t, uint16(StatusInvalidInput), status(tp.Call(0, input(CallFlushVAList, false, 0, 0), 0x1000, 0)),
		"rep call without reps")
}

func TestHypercallFeatureGates(t *testing.T) {
	tp := newTestPartition(t, "relaxed", 2)
	for _, c := range []uint16{CallFlushVASpace, CallSendIPI, CallPostMessage, CallSignalEvent} {
		require.Equal(t, uint16(StatusAccessDenied), status(tp.Call(0, input(c, true, 0, 0), 0, 0)), hypercallName(c))
	}
}

func TestHypercallSendIPI(t *testing.T) {
	tp := newTestPartition(t, "all", 4)
	// Fast: vector in param 1, mask in param 2; VP 5 does not exist.
	r := tp.Call(0, input(CallSendIPI, true, 0, 0), 0x41, 0b100110)
	require.Equal(t, uint16(StatusSuccess), status(r))
	require.Equal(t, []irq{{1, 0x41}, {2, 0x41}}, tp.host.takeIRQs())
	require.Equal(t, uint16(StatusInvalidInput), status(tp.Call(0, input(CallSendIPI, true, 0, 0), 0x0f, 1)), "vector < 16")

	// Slow: the same in the input page.
	le := binary.LittleEndian
	le.PutUint32(tp.mem.b[0x2000:], 0x42)
	le.PutUint64(tp.mem.b[0x2008:], 0b1001)
	require.Equal(t, uint16(StatusSuccess), status(tp.Call(1, input(CallSendIPI, false, 0, 0), 0x2000, 0)))
	require.Equal(t, []irq{{0, 0x42}, {3, 0x42}}, tp.host.takeIRQs())
	require.Equal(t, uint16(StatusInvalidAlignment), status(tp.Call(1, input(CallSendIPI, false, 0, 0), 0x2004, 0)))
	require.Equal(t, uint16(StatusInvalidInput), status(tp.Call(1, input(CallSendIPI, false, 0, 0), 0xff_0000, 0)),
		"input outside RAM")
	require.Equal(t, uint16(StatusInvalidInput), status(tp.Call(1, input(CallSendIPI, false, 0, 0), 0x2ff8, 0)),
		"input crossing a page")

	// Ex: vector, then an HV_VP_SET with bank 0 holding VPs 0 and 2.
	b := tp.mem.b[0x4000:]
	le.PutUint32(b[0:], 0x43)
	le.PutUint64(b[8:], vpSetSparse4K)
	le.PutUint64(b[16:], 1)     // bank 0 valid
	le.PutUint64(b[24:], 0b101) // VPs 0, 2
	require.Equal(t, uint16(StatusSuccess), status(tp.Call(0, input(CallSendIPIEx, false, 1, 0), 0x4000, 0)))
	require.Equal(t, []irq{{0, 0x43}, {2, 0x43}}, tp.host.takeIRQs())
	require.Equal(t, uint16(StatusInvalidInput), status(tp.Call(0, input(CallSendIPIEx, false, 0, 0), 0x4000, 0)),
		"bank contents beyond the variable header")
	le.PutUint64(b[8:], vpSetAll)
	require.Equal(t, uint16(StatusSuccess), status(tp.Call(0, input(CallSendIPIEx, false, 0, 0), 0x4000, 0)))
	require.Len(t, tp.host.takeIRQs(), 4)
	le.PutUint64(b[8:], 7)
	require.Equal(t, uint16(StatusInvalidInput), status(tp.Call(0, input(CallSendIPIEx, false, 0, 0), 0x4000, 0)), "bad format")
	require.Equal(t, uint16(StatusInvalidInput), status(tp.Call(0, input(CallSendIPIEx, true, 0, 0), 0, 0)), "fast ex")
}

func TestHypercallFlush(t *testing.T) {
	tp := newTestPartition(t, "all", 3)
	le := binary.LittleEndian
	b := tp.mem.b[0x6000:]
	le.PutUint64(b[0:], 0x1234000) // address space
	le.PutUint64(b[8:], 0)         // flags
	le.PutUint64(b[16:], 0b110)    // VPs 1, 2
	require.Equal(t, uint16(StatusSuccess), status(tp.Call(0, input(CallFlushVASpace, false, 0, 0), 0x6000, 0)))
	r := tp.Call(0, input(CallFlushVAList, false, 0, 5), 0x6000, 0)
	require.Equal(t, uint16(StatusSuccess), status(r))
	require.Equal(t, 5, repsDone(r))
	le.PutUint64(b[8:], flushAllProcessors)
	require.Equal(t, uint16(StatusSuccess), status(tp.Call(0, input(CallFlushVASpace, false, 0, 0), 0x6000, 0)))
	require.Equal(t, uint16(StatusInvalidInput), status(tp.Call(0, input(CallFlushVASpace, true, 0, 0), 0, 0)), "fast needs XMM")

	// Ex: address space, flags, VP set (bank 0: VP 0).
	le.PutUint64(b[8:], 0)
	le.PutUint64(b[16:], vpSetSparse4K)
	le.PutUint64(b[24:], 1)
	le.PutUint64(b[32:], 1)
	require.Equal(t, uint16(StatusSuccess), status(tp.Call(1, input(CallFlushVASpaceEx, false, 1, 0), 0x6000, 0)))
	r = tp.Call(1, input(CallFlushVAListEx, false, 1, 2), 0x6000, 0)
	require.Equal(t, uint16(StatusSuccess), status(r))
	require.Equal(t, 2, repsDone(r))
	require.Equal(t, [][]int{{1, 2}, {1, 2}, {0, 1, 2}, {0}, {0}}, tp.host.flushes)

	s := tp.Summary().Hypercalls
	require.Equal(t, HypercallCount{Calls: 3, Statuses: map[string]uint64{"SUCCESS": 2, "INVALID_HYPERCALL_INPUT": 1}},
		s["HvFlushVirtualAddressSpace"])
}

func TestHypercallPostMessageSignalEvent(t *testing.T) {
	tp := newTestPartition(t, "all", 1)
	le := binary.LittleEndian
	b := tp.mem.b[0x7000:]
	le.PutUint32(b[0:], 1)   // connection
	le.PutUint32(b[8:], 1)   // message type
	le.PutUint32(b[12:], 16) // payload size
	require.Equal(t, uint16(StatusInvalidConnectionID), status(tp.Call(0, input(CallPostMessage, false, 0, 0), 0x7000, 0)))
	le.PutUint32(b[12:], 241)
	require.Equal(t, uint16(StatusInvalidParameter), status(tp.Call(0, input(CallPostMessage, false, 0, 0), 0x7000, 0)))
	le.PutUint32(b[12:], 0)
	le.PutUint32(b[8:], 0x80000001)
	require.Equal(t, uint16(StatusInvalidParameter), status(tp.Call(0, input(CallPostMessage, false, 0, 0), 0x7000, 0)),
		"hypervisor message types are not the guest's to send")
	require.Equal(t, uint16(StatusInvalidInput), status(tp.Call(0, input(CallPostMessage, true, 0, 0), 0, 0)))
	require.Equal(t, uint16(StatusInvalidConnectionID), status(tp.Call(0, input(CallSignalEvent, true, 0, 0), 5, 0)))
	require.Equal(t, uint16(StatusInvalidPortID), status(tp.Call(0, input(CallSignalEvent, true, 0, 0), 1<<32|5, 0)), "flag number")
	require.Equal(t, uint16(StatusInvalidInput), status(tp.Call(0, input(CallSignalEvent, true, 0, 0), 1<<24, 0)))
	require.Equal(t, uint16(StatusInvalidConnectionID), status(tp.Call(0, input(CallSignalEvent, false, 0, 0), 0x7000, 0)))
	require.Equal(t, uint16(StatusInvalidAlignment), status(tp.Call(0, input(CallSignalEvent, false, 0, 0), 0x7001, 0)))
}

// fakeCPU holds registers for Hypercall.
type fakeCPU struct {
	regs  kvm.Regs
	sregs kvm.Sregs
	sets  int
}

func (c *fakeCPU) GetRegs() (kvm.Regs, error)   { return c.regs, nil }
func (c *fakeCPU) SetRegs(r kvm.Regs) error     { c.regs = r; c.sets++; return nil }
func (c *fakeCPU) GetSregs() (kvm.Sregs, error) { return c.sregs, nil }

func TestHypercallCallingConventions(t *testing.T) {
	tp := newTestPartition(t, "all", 2)
	// 64-bit: RCX input, RDX and R8 parameters, RAX result; RIP untouched.
	c := &fakeCPU{regs: kvm.Regs{RCX: input(CallSendIPI, true, 0, 0), RDX: 0x44, R8: 2, RIP: 0x1234, RAX: 0xffff}}
	c.sregs.EFER = eferLMA
	c.sregs.CS.L = 1
	// Before the page is enabled the port is an empty one.
	require.NoError(t, tp.Hypercall(0, c))
	require.Zero(t, c.sets, "no register written")
	require.Empty(t, tp.host.takeIRQs())
	require.Empty(t, tp.Summary().Hypercalls)
	tp.mustWrite(t, 0, MSRGuestOSID, 0x8100000601c00000)
	tp.mustWrite(t, 0, MSRHypercall, 0x5000|hypercallEnable)
	require.NoError(t, tp.Hypercall(0, c))
	require.Equal(t, uint64(0), c.regs.RAX)
	require.Equal(t, uint64(0x1234), c.regs.RIP)
	require.Equal(t, []irq{{1, 0x44}}, tp.host.takeIRQs())

	// 32-bit: EDX:EAX input, EBX:ECX and EDI:ESI parameters, EDX:EAX result.
	v := input(CallFlushVAList, false, 0, 3)
	le := binary.LittleEndian
	le.PutUint64(tp.mem.b[0x9008:], flushAllProcessors)
	c = &fakeCPU{regs: kvm.Regs{RDX: v >> 32, RAX: v & 0xffffffff, RBX: 0, RCX: 0x9000, RDI: 0, RSI: 0}}
	require.NoError(t, tp.Hypercall(1, c))
	require.Equal(t, uint64(StatusSuccess), c.regs.RAX)
	require.Equal(t, uint64(3), c.regs.RDX, "reps completed in EDX bits 11:0")
	require.Equal(t, [][]int{{0, 1}}, tp.host.flushes)

	// Compatibility mode (LMA without CS.L) uses the 32-bit convention.
	c = &fakeCPU{regs: kvm.Regs{RAX: 0x99, RCX: input(CallSendIPI, true, 0, 0)}}
	c.sregs.EFER = eferLMA
	require.NoError(t, tp.Hypercall(0, c))
	require.Equal(t, uint64(StatusInvalidHypercallCode), c.regs.RAX, "code 0x99 from EAX")

	// Not from user mode.
	c = &fakeCPU{regs: kvm.Regs{RCX: input(CallNotifyLongSpin, false, 0, 0)}}
	c.sregs.EFER, c.sregs.CS.L, c.sregs.SS.DPL = eferLMA, 1, 3
	require.NoError(t, tp.Hypercall(0, c))
	require.Equal(t, uint64(StatusAccessDenied), c.regs.RAX)
}

func TestSignalFallback(t *testing.T) {
	tp := newTestPartition(t, "all", 1)
	tp.mustWrite(t, 0, MSRGuestOSID, 0x8100000601c00000)
	tp.mustWrite(t, 0, MSRHypercall, 0x5000|hypercallEnable)
	long := func(r kvm.Regs) *fakeCPU {
		c := &fakeCPU{regs: r}
		c.sregs.EFER, c.sregs.CS.L = eferLMA, 1
		return c
	}
	// The page's fast path on a connection nothing takes: the result of
	// the hypercall in RAX, and RCX cleared so that the page returns it.
	c := long(kvm.Regs{RCX: fastSignalControl, RDX: 0x77, RAX: 0x77})
	require.NoError(t, tp.SignalFallback(0, c))
	require.Equal(t, uint64(StatusInvalidConnectionID), c.regs.RAX)
	require.Zero(t, c.regs.RCX)
	require.Equal(t, uint64(1), tp.Summary().Hypercalls["HvSignalEvent"].Statuses["INVALID_CONNECTION_ID"])

	// Any other write to the port changes nothing: a guest's own OUT, or
	// one from 32-bit code (the page sends those to HypercallPort).
	for _, c := range []*fakeCPU{
		long(kvm.Regs{RCX: input(CallSendIPI, true, 0, 0), RAX: 5}),
		{regs: kvm.Regs{RCX: fastSignalControl, RAX: 5}},
	} {
		require.NoError(t, tp.SignalFallback(0, c))
		require.Zero(t, c.sets)
	}

	tp.NoteFastSignals(3)
	require.Equal(t, uint64(3), tp.Summary().Hypercalls["HvSignalEvent"].Statuses["SUCCESS"])
	require.Equal(t, uint64(4), tp.Summary().Hypercalls["HvSignalEvent"].Calls)
}

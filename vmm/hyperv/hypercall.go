package hyperv

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/vmmdev/vmm/vmm/kvm"
)

// Hypercall codes (TLFS appendix; Linux hvgdk_mini.h).
const (
	CallFlushVASpace      = 0x0002
	CallFlushVAList       = 0x0003
	CallNotifyLongSpin    = 0x0008
	CallSendIPI           = 0x000b
	CallFlushVASpaceEx    = 0x0013
	CallFlushVAListEx     = 0x0014
	CallSendIPIEx         = 0x0015
	CallPostMessage       = 0x005c
	CallSignalEvent       = 0x005d
	hypercallFastBit      = 1 << 16
	hypercallVarHdrShift  = 17
	hypercallRepCntShift  = 32
	hypercallRepIdxShift  = 48
	hypercallReservedBits = 0xf000_f000_f800_0000 // 27-31, 44-47, 60-63
)

// Hypercall status codes (TLFS "Hypercall Status Codes").
const (
	StatusSuccess              = 0x0000
	StatusInvalidHypercallCode = 0x0002
	StatusInvalidInput         = 0x0003
	StatusInvalidAlignment     = 0x0004
	StatusInvalidParameter     = 0x0005
	StatusAccessDenied         = 0x0006
	StatusInvalidPortID        = 0x0011
	StatusInvalidConnectionID  = 0x0012
)

func hypercallName(code uint16) string {
	switch code {
	case CallFlushVASpace:
		return "HvFlushVirtualAddressSpace"
	case CallFlushVAList:
		return "HvFlushVirtualAddressList"
	case CallNotifyLongSpin:
		return "HvNotifyLongSpinWait"
	case CallSendIPI:
		return "HvSendSyntheticClusterIpi"
	case CallFlushVASpaceEx:
		return "HvFlushVirtualAddressSpaceEx"
	case CallFlushVAListEx:
		return "HvFlushVirtualAddressListEx"
	case CallSendIPIEx:
		return "HvSendSyntheticClusterIpiEx"
	case CallPostMessage:
		return "HvPostMessage"
	case CallSignalEvent:
		return "HvSignalEvent"
	}
	return fmt.Sprintf("hypercall_%#x", code)
}

func statusName(s uint16) string {
	switch s {
	case StatusSuccess:
		return "SUCCESS"
	case StatusInvalidHypercallCode:
		return "INVALID_HYPERCALL_CODE"
	case StatusInvalidInput:
		return "INVALID_HYPERCALL_INPUT"
	case StatusInvalidAlignment:
		return "INVALID_ALIGNMENT"
	case StatusInvalidParameter:
		return "INVALID_PARAMETER"
	case StatusAccessDenied:
		return "ACCESS_DENIED"
	case StatusInvalidPortID:
		return "INVALID_PORT_ID"
	case StatusInvalidConnectionID:
		return "INVALID_CONNECTION_ID"
	}
	return fmt.Sprintf("%#x", s)
}

// hypercallInput is the decoded hypercall input value and parameters.
type hypercallInput struct {
	code     uint16
	fast     bool
	varHdr   int // variable header size in 8-byte units
	repCount uint16
	repStart uint16
	// param1/param2: the input and output GPAs (slow) or the register
	// parameters (fast).
	param1, param2 uint64
}

func decodeInput(v, p1, p2 uint64) (hypercallInput, bool) {
	in := hypercallInput{
		code:     uint16(v),
		fast:     v&hypercallFastBit != 0,
		varHdr:   int(v>>hypercallVarHdrShift) & 0x3ff,
		repCount: uint16(v>>hypercallRepCntShift) & 0xfff,
		repStart: uint16(v>>hypercallRepIdxShift) & 0xfff,
		param1:   p1, param2: p2,
	}
	return in, v&hypercallReservedBits == 0
}

// result packs a hypercall result value: status and reps completed.
func result(status uint16, reps uint16) uint64 {
	return uint64(status) | uint64(reps)<<hypercallRepCntShift
}

// CPU is the calling vCPU's registers (*kvm.VCPU), used on its own thread.
type CPU interface {
	GetRegs() (kvm.Regs, error)
	SetRegs(kvm.Regs) error
	GetSregs() (kvm.Sregs, error)
}

const eferLMA = 1 << 10

// Hypercall handles the hypercall vCPU vcpu made through the hypercall page
// (its port write exited to the VMM): it reads the input from the 64- or
// 32-bit calling convention's registers, performs the call and writes the
// result back. RIP is left alone: KVM completes the port write, and the
// page's "ret" returns to the caller.
//
// Without an enabled hypercall page the port is an empty one: the write is
// dropped and no register changes (the TLFS gives #UD for a hypercall then;
// a guest reaches the port only by its own OUT, as to any empty port).
//
// From CPL > 0 the TLFS gives #UD too. The page's OUT at CPL 3 faults in
// the CPU itself (#GP: Linux runs user code at IOPL 0 and grants the port
// to no one), before any exit. Only a user program that the guest kernel
// both granted the port (ioperm) and mapped the page for reaches vmm; it
// gets HV_STATUS_ACCESS_DENIED, not #UD: KVM completes the OUT when the
// vCPU next runs, so an exception injected here would be reported after
// the instruction, not at it.
func (p *Partition) Hypercall(vcpu int, cpu CPU) error { return p.portHypercall(vcpu, cpu, false) }

// SignalFallback handles a write to SignalPort that no ioeventfd took: the
// hypercall page's fast HvSignalEvent on a connection without one (not a
// VMBus channel, or not open). It does the hypercall from the registers,
// which the page left as the caller set them but for RAX, and clears RCX
// so that the page returns this result. Any other write to the port (a
// guest's own OUT, not from the page's fast path) changes nothing.
func (p *Partition) SignalFallback(vcpu int, cpu CPU) error { return p.portHypercall(vcpu, cpu, true) }

// NoteFastSignals counts n fast HvSignalEvents that an ioeventfd took
// (HypercallCode) in the summary, as successful calls.
func (p *Partition) NoteFastSignals(n uint64) { p.stats.hypercalls(CallSignalEvent, StatusSuccess, n) }

func (p *Partition) portHypercall(vcpu int, cpu CPU, fallback bool) error {
	p.mu.Lock()
	enabled := p.hypercall&hypercallEnable != 0
	p.mu.Unlock()
	if !enabled {
		return nil
	}
	regs, err := cpu.GetRegs()
	if err != nil {
		return fmt.Errorf("hypercall on vCPU %d: %w", vcpu, err)
	}
	sregs, err := cpu.GetSregs()
	if err != nil {
		return fmt.Errorf("hypercall on vCPU %d: %w", vcpu, err)
	}
	long := sregs.EFER&eferLMA != 0 && sregs.CS.L != 0
	if fallback && (!long || regs.RCX != fastSignalControl) {
		return nil
	}
	var value, p1, p2 uint64
	if long {
		value, p1, p2 = regs.RCX, regs.RDX, regs.R8
	} else {
		value = regs.RDX<<32 | regs.RAX&0xffffffff
		p1 = regs.RBX<<32 | regs.RCX&0xffffffff
		p2 = regs.RDI<<32 | regs.RSI&0xffffffff
	}
	var res uint64
	if sregs.SS.DPL != 0 {
		// Only the guest kernel may call (see above).
		res = result(StatusAccessDenied, 0)
		in, _ := decodeInput(value, p1, p2)
		p.stats.hypercall(in.code, StatusAccessDenied)
		p.trace.hypercall(vcpu, in, StatusAccessDenied)
	} else {
		res = p.Call(vcpu, value, p1, p2)
	}
	if long {
		regs.RAX = res
	} else {
		regs.RAX = res & 0xffffffff
		regs.RDX = res >> 32
	}
	if fallback {
		regs.RCX = 0
	}
	if err := cpu.SetRegs(regs); err != nil {
		return fmt.Errorf("hypercall on vCPU %d: %w", vcpu, err)
	}
	return nil
}

// Call performs one hypercall with input value and parameters as the
// calling convention delivers them, and returns the result value.
func (p *Partition) Call(vcpu int, value, param1, param2 uint64) uint64 {
	in, ok := decodeInput(value, param1, param2)
	var status, reps uint16
	if !ok {
		status = StatusInvalidInput
	} else {
		status, reps = p.call(vcpu, in)
	}
	p.stats.hypercall(in.code, status)
	p.trace.hypercall(vcpu, in, status)
	return result(status, reps)
}

// rep reports whether code is a rep hypercall.
func rep(code uint16) bool {
	return code == CallFlushVAList || code == CallFlushVAListEx
}

func (p *Partition) call(vcpu int, in hypercallInput) (status, reps uint16) {
	switch in.code {
	case CallNotifyLongSpin, CallFlushVASpace, CallFlushVAList, CallFlushVASpaceEx, CallFlushVAListEx,
		CallSendIPI, CallSendIPIEx, CallPostMessage, CallSignalEvent:
	default:
		return StatusInvalidHypercallCode, 0
	}
	if rep(in.code) != (in.repCount > 0) || in.repStart > in.repCount {
		return StatusInvalidInput, 0
	}
	switch in.code {
	case CallFlushVASpace, CallFlushVAList, CallFlushVASpaceEx, CallFlushVAListEx:
		if !p.f.TLBFlush {
			return StatusAccessDenied, 0
		}
	case CallSendIPI, CallSendIPIEx:
		if !p.f.IPI {
			return StatusAccessDenied, 0
		}
	case CallPostMessage, CallSignalEvent:
		if !p.f.SynIC {
			return StatusAccessDenied, 0
		}
	}
	switch in.code {
	case CallNotifyLongSpin:
		// A hint that a vCPU spins on a lock held by a preempted one; the
		// host scheduler already runs vCPU threads, so the call only counts.
		return StatusSuccess, 0
	case CallFlushVASpace, CallFlushVAList, CallFlushVASpaceEx, CallFlushVAListEx:
		return p.flush(vcpu, in)
	case CallSendIPI, CallSendIPIEx:
		return p.sendIPI(in), 0
	case CallPostMessage:
		return p.hvPostMessage(in), 0
	case CallSignalEvent:
		// Connections a test device made, then the bus (--vmbus).
		param := in.param1
		if !in.fast {
			b, st := p.input(in, 8)
			if st != StatusSuccess {
				return st, 0
			}
			param = binary.LittleEndian.Uint64(b)
		}
		return p.signalEvent(param), 0
	}
	return StatusInvalidHypercallCode, 0
}

// input returns n bytes of a slow call's input page.
func (p *Partition) input(in hypercallInput, n int) ([]byte, uint16) {
	if in.param1%8 != 0 {
		return nil, StatusInvalidAlignment
	}
	// Input must not cross a page (TLFS).
	if in.param1%4096+uint64(n) > 4096 {
		return nil, StatusInvalidInput
	}
	b, err := p.mem.Slice(in.param1, uint64(n))
	if err != nil {
		return nil, StatusInvalidInput
	}
	out := make([]byte, n)
	copy(out, b)
	return out, StatusSuccess
}

// Flush flags (TLFS HvFlushVirtualAddressSpace).
const flushAllProcessors = 1 << 0

// Generic VP set formats (TLFS HV_GENERIC_SET_FORMAT).
const (
	vpSetSparse4K = 0
	vpSetAll      = 1
)

// vpSet decodes an HV_VP_SET at b: format, valid bank mask, then one
// 64-bit VP mask per set bank bit. It returns the VPs or a status.
func (p *Partition) vpSet(b []byte, varHdr int) ([]int, uint16) {
	if len(b) < 16 {
		return nil, StatusInvalidInput
	}
	le := binary.LittleEndian
	format, banks := le.Uint64(b), le.Uint64(b[8:])
	switch format {
	case vpSetAll:
		return p.allVPs(), StatusSuccess
	case vpSetSparse4K:
	default:
		return nil, StatusInvalidInput
	}
	n := bits.OnesCount64(banks)
	if n > varHdr || len(b) < 16+8*n {
		return nil, StatusInvalidInput
	}
	var vps []int
	i := 0
	for bank := 0; bank < 64; bank++ {
		if banks&(1<<bank) == 0 {
			continue
		}
		vps = append(vps, p.maskVPs(le.Uint64(b[16+8*i:]), bank*64)...)
		i++
	}
	return vps, StatusSuccess
}

func (p *Partition) allVPs() []int {
	out := make([]int, len(p.vps))
	for i := range out {
		out[i] = i
	}
	return out
}

// maskVPs lists the existing VPs whose bit is set in mask (bit i = VP base+i).
func (p *Partition) maskVPs(mask uint64, base int) []int {
	var out []int
	for i := 0; i < 64; i++ {
		if mask&(1<<i) != 0 && base+i < len(p.vps) {
			out = append(out, base+i)
		}
	}
	return out
}

func (p *Partition) flush(vcpu int, in hypercallInput) (uint16, uint16) {
	// Fast forms carry the processor mask or VP set in XMM registers,
	// which vmm does not advertise (no XMM fast input).
	if in.fast {
		return StatusInvalidInput, 0
	}
	ex := in.code == CallFlushVASpaceEx || in.code == CallFlushVAListEx
	var targets []int
	if ex {
		b, st := p.input(in, 16+16+8*in.varHdr)
		if st != StatusSuccess {
			return st, 0
		}
		flags := binary.LittleEndian.Uint64(b[8:])
		if flags&flushAllProcessors != 0 {
			targets = p.allVPs()
		} else if targets, st = p.vpSet(b[16:], in.varHdr); st != StatusSuccess {
			return st, 0
		}
	} else {
		b, st := p.input(in, 24)
		if st != StatusSuccess {
			return st, 0
		}
		flags, mask := binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:])
		if flags&flushAllProcessors != 0 {
			targets = p.allVPs()
		} else {
			targets = p.maskVPs(mask, 0)
		}
	}
	// vmm flushes whole TLBs, so the address list of the rep forms is not
	// read: every rep is done.
	if err := p.host.FlushTLB(vcpu, targets); err != nil {
		p.log.Warn("Hyper-V TLB flush failed", "vcpu", vcpu, "err", err)
		return StatusInvalidParameter, 0
	}
	return StatusSuccess, in.repCount
}

func (p *Partition) sendIPI(in hypercallInput) uint16 {
	var vector uint32
	var targets []int
	if in.code == CallSendIPI {
		if in.fast {
			vector, targets = uint32(in.param1), p.maskVPs(in.param2, 0)
		} else {
			b, st := p.input(in, 16)
			if st != StatusSuccess {
				return st
			}
			vector, targets = binary.LittleEndian.Uint32(b), p.maskVPs(binary.LittleEndian.Uint64(b[8:]), 0)
		}
	} else {
		if in.fast {
			return StatusInvalidInput
		}
		b, st := p.input(in, 8+16+8*in.varHdr)
		if st != StatusSuccess {
			return st
		}
		vector = binary.LittleEndian.Uint32(b)
		if targets, st = p.vpSet(b[8:], in.varHdr); st != StatusSuccess {
			return st
		}
	}
	if vector < sintFirstVector || vector > 0xff {
		return StatusInvalidInput
	}
	for _, t := range targets {
		if err := p.host.Interrupt(t, uint8(vector)); err != nil {
			p.log.Warn("Hyper-V IPI failed", "target", t, "vector", vector, "err", err)
			return StatusInvalidParameter
		}
	}
	return StatusSuccess
}

// HvPostMessage input: connection ID u32, reserved u32, message type u32,
// payload size u32, payload.
func (p *Partition) hvPostMessage(in hypercallInput) uint16 {
	if in.fast {
		return StatusInvalidInput
	}
	// Read the header, then only the payload it declares: a short
	// message near the end of a page is valid input.
	b, st := p.input(in, 16)
	if st != StatusSuccess {
		return st
	}
	le := binary.LittleEndian
	typ, size := le.Uint32(b[8:]), le.Uint32(b[12:])
	if typ == 0 || typ&0x80000000 != 0 || size > msgPayloadMax {
		return StatusInvalidParameter
	}
	if b, st = p.input(in, 16+int(size)); st != StatusSuccess {
		return st
	}
	return p.deliverMessage(le.Uint32(b[0:])&connIDMask, typ, b[16:16+size])
}

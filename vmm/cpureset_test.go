package vmm

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/vmmdev/vmm/layout"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// TestResetSregs: real mode at F000:FFF0 with the reset base, CR0
// 60000010, EFER 0, the APIC enabled in xAPIC mode at its default base.
func TestResetSregs(t *testing.T) {
	ap := resetSregs(false)
	assert.Equal(t, uint64(0x60000010), ap.CR0)
	assert.Zero(t, ap.CR2|ap.CR3|ap.CR4|ap.CR8|ap.EFER)
	assert.Equal(t, kvm.Segment{Base: 0xffff0000, Limit: 0xffff, Selector: 0xf000, Type: 0xb, Present: 1, S: 1}, ap.CS)
	for _, s := range []kvm.Segment{ap.DS, ap.ES, ap.FS, ap.GS, ap.SS} {
		assert.Equal(t, kvm.Segment{Limit: 0xffff, Type: 3, Present: 1, S: 1}, s)
	}
	assert.Equal(t, kvm.DTable{Limit: 0xffff}, ap.GDT)
	assert.Equal(t, kvm.DTable{Limit: 0xffff}, ap.IDT)
	assert.Equal(t, uint8(0xb), ap.TR.Type)
	assert.Equal(t, uint8(2), ap.LDT.Type)
	assert.Equal(t, uint64(layout.LAPICBase|apicBaseEnable), ap.APICBase, "xAPIC, enabled, not the BSP")
	assert.Equal(t, [4]uint64{}, ap.InterruptBitmap)
	assert.Equal(t, uint64(layout.LAPICBase|apicBaseEnable|apicBaseBSP), resetSregs(true).APICBase)
}

func TestResetRegs(t *testing.T) {
	assert.Equal(t, kvm.Regs{RIP: 0xfff0, RFLAGS: 2, RDX: 0x00a20f12}, resetRegs(0x00a20f12))
}

// TestResetLAPIC: an AP's page after reset carries its ID in xAPIC form
// (bits 31:24), has every LVT masked and the APIC software-disabled, with
// the PC's LINT delivery modes; nothing in service, pending or counting.
func TestResetLAPIC(t *testing.T) {
	st := resetLAPIC(3, 0x50014, false)
	assert.Equal(t, uint32(3)<<24, st.Reg(apicRegID))
	assert.Equal(t, uint32(0x50014), st.Reg(apicRegVersion))
	assert.Equal(t, uint32(0xffffffff), st.Reg(apicRegDFR))
	assert.Equal(t, uint32(0xff), st.Reg(apicRegSVR), "software-disabled, spurious vector FF")
	assert.Equal(t, uint32(apicLVTMasked), st.Reg(apicLVTCMCI))
	for _, off := range []int{apicLVTTimer, 0x330, 0x340, apicLVTError} {
		assert.Equal(t, uint32(apicLVTMasked), st.Reg(off), "LVT %#x", off)
	}
	assert.Equal(t, uint32(apicLVTMasked|apicModeExtINT), st.Reg(apicLVTLINT0))
	assert.Equal(t, uint32(apicLVTMasked|apicModeNMI), st.Reg(apicLVTLINT1))
	for off := 0x80; off < 0x300; off += 0x10 {
		if off == apicRegDFR || off == apicRegSVR || off == apicLVTCMCI {
			continue
		}
		assert.Zero(t, st.Reg(off), "register %#x (TPR, LDR, ISR, TMR, IRR, ESR)", off)
	}
	for _, off := range []int{0x300, 0x310, 0x380, 0x390, 0x3e0} {
		assert.Zero(t, st.Reg(off), "register %#x (ICR, timer counts, divide)", off)
	}
	bsp := resetLAPIC(0, 0x50014, true)
	assert.Zero(t, bsp.Reg(apicRegID))
	assert.Equal(t, uint32(apicModeExtINT), bsp.Reg(apicLVTLINT0), "the boot CPU's LINT0 unmasked, as KVM resets it")
}

// TestResetXSAVE: FCW and MXCSR at their reset values in the legacy area,
// x87 and SSE marked present so KVM loads them, all else zero; the buffer
// is as large as KVM reads.
func TestResetXSAVE(t *testing.T) {
	b := resetXSAVE(0)
	assert.Len(t, b, kvm.XSAVEMin)
	assert.Equal(t, uint16(0x37f), binary.LittleEndian.Uint16(b[0:]))
	assert.Equal(t, uint32(0x1f80), binary.LittleEndian.Uint32(b[24:]))
	assert.Equal(t, uint64(3), binary.LittleEndian.Uint64(b[512:]))
	var nonzero int
	for i, c := range b {
		if c != 0 && i != 0 && i != 1 && i != 24 && i != 25 && i != 512 {
			nonzero++
		}
	}
	assert.Zero(t, nonzero)
	assert.Len(t, resetXSAVE(11008), 11008, "XSAVE2 size")
}

// TestMSRWrites: only MSRs KVM could read and that differ from their reset
// value are written back, with that value.
func TestMSRWrites(t *testing.T) {
	have := []kvm.MSREntry{
		{Index: 0x277, Data: 0x0407050600070106},      // PAT as Linux programs it
		{Index: 0xc0000082, Data: 0xffffffff81e00080}, // LSTAR
		{Index: 0x4b564d01, Data: 0x1234001},          // kvmclock enabled
		{Index: 0x4b564d03},                           // steal time already off
		{Index: 0x10, Data: 99},                       // TSC: not ours to reset
	}
	assert.Equal(t, []kvm.MSREntry{{Index: 0x277, Data: resetPAT}, {Index: 0xc0000082}, {Index: 0x4b564d01}}, msrWrites(have))
	assert.Empty(t, msrWrites([]kvm.MSREntry{{Index: 0x277, Data: resetPAT}}))
}

package vmm

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/vmm/hyperv"
	"github.com/vmmdev/vmm/vmm/kvm"
)

func supportedFixture() *kvm.CPUID {
	return &kvm.CPUID{Entries: []kvm.CPUIDEntry{
		{Function: 0, EAX: 0x1f},
		{Function: 1, EBX: 0xff0a0800, ECX: 0x1, EDX: featureHTT},
		{Function: 4, Index: 0, Flags: leafSignificantIdx, EAX: 0xfc004121},
		{Function: 0xb, Index: 0, Flags: leafSignificantIdx},
		{Function: 0xb, Index: 1, Flags: leafSignificantIdx},
		{Function: 0xb, Index: 2, Flags: leafSignificantIdx},
		{Function: 0x80000008, ECX: 0x7007},
		{Function: 0x8000001e, EAX: 9, EBX: 0x100, ECX: 0x300},
	}}
}

func TestVCPUCPUIDTopology(t *testing.T) {
	c := vcpuCPUID(supportedFixture(), 3, 4, cpuidOptions{tscDeadline: true})

	l1 := c.Get(1, 0)
	require.NotNil(t, l1)
	require.Equal(t, uint32(3), l1.EBX>>24, "initial APIC ID")
	require.Equal(t, uint32(4), (l1.EBX>>16)&0xff, "logical processor count")
	require.Equal(t, uint32(0x0800), l1.EBX&0xffff, "other EBX bits kept")
	require.NotZero(t, l1.ECX&featureHypervisor)
	require.NotZero(t, l1.EDX&featureHTT)
	require.NotZero(t, l1.ECX&featureTSCDeadline)

	require.Equal(t, uint32(3), c.Get(4, 0).EAX>>26, "cores per package - 1")

	smt, core, inval := c.Get(0xb, 0), c.Get(0xb, 1), c.Get(0xb, 2)
	require.Equal(t, uint32(3), smt.EDX)
	require.Equal(t, uint32(1), smt.EBX)
	require.Equal(t, uint32(1<<8), smt.ECX)
	require.Equal(t, uint32(2), core.EAX, "two APIC ID bits for 4 cores")
	require.Equal(t, uint32(4), core.EBX)
	require.Equal(t, uint32(2<<8|1), core.ECX)
	require.Equal(t, uint32(2), inval.ECX&0xff)
	require.Zero(t, inval.ECX>>8, "terminating level type")

	require.Equal(t, uint32(3), c.Get(0x80000008, 0).ECX&0xff)
	require.Equal(t, uint32(2), (c.Get(0x80000008, 0).ECX>>12)&0xf)
	require.Equal(t, uint32(3), c.Get(0x8000001e, 0).EAX)

	sig := c.Get(cpuidKVMSignature, 0)
	require.NotNil(t, sig, "KVM leaves added")
	require.Equal(t, uint32(kvmSignatureEBX), sig.EBX)
	require.NotNil(t, c.Get(cpuidKVMFeatures, 0))
}

func TestVCPUCPUIDSingle(t *testing.T) {
	s := supportedFixture()
	c := vcpuCPUID(s, 0, 1, cpuidOptions{})
	require.Zero(t, c.Get(1, 0).EDX&featureHTT)
	require.Zero(t, c.Get(1, 0).ECX&featureTSCDeadline)
	require.Equal(t, uint32(0), c.Get(0xb, 1).EAX)
	// The supported table is not modified.
	require.Equal(t, uint32(0xff0a0800), s.Get(1, 0).EBX)
}

// TestHyperVKeepsHostSSE42AndPOPCNT: Windows needs SSE4.2 and POPCNT; the
// Hyper-V leaves leave leaf 1 as the host has it, so both pass through
// where the host has them and are never invented where it has not.
func TestHyperVKeepsHostSSE42AndPOPCNT(t *testing.T) {
	const sse42, popcnt = 1 << 20, 1 << 23
	f, err := hyperv.ParseFeatures("windows")
	require.NoError(t, err)
	for _, host := range []uint32{sse42 | popcnt, 0} {
		s := supportedFixture()
		s.Get(1, 0).ECX |= host
		c := vcpuCPUID(s, 0, 2, cpuidOptions{})
		f.ApplyCPUID(c, 2)
		require.Equal(t, host, c.Get(1, 0).ECX&(sse42|popcnt), "leaf 1 ECX as the host's, host %#x", host)
		require.NotZero(t, c.Get(1, 0).ECX&featureHypervisor)
	}
}

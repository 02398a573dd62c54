package hyperv

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/vmm/kvm"
)

func TestParseFeatures(t *testing.T) {
	f, err := ParseFeatures("")
	require.NoError(t, err)
	require.False(t, f.Enabled())
	require.Nil(t, f.Leaves(1))

	f, err = ParseFeatures("relaxed")
	require.NoError(t, err)
	require.True(t, f.Enabled())
	require.True(t, f.Relaxed)
	require.False(t, f.VPIndex)

	f, err = ParseFeatures("all")
	require.NoError(t, err)
	require.True(t, f.Relaxed && f.VPIndex && f.Runtime && f.Time && f.Frequencies && f.Crash && f.Reset &&
		f.SynIC && f.STimer && f.STimerDirect && f.TLBFlush && f.IPI)
	require.False(t, f.KVMSignature)

	f, err = ParseFeatures("windows,vendor-id=Other Hv,kvm-signature")
	require.NoError(t, err)
	require.Equal(t, uint32(0x1fff), f.Spinlocks)
	require.Equal(t, "Other Hv", f.VendorID)
	require.True(t, f.KVMSignature)
	require.False(t, f.Crash)

	f, err = ParseFeatures("all,crash=off")
	require.NoError(t, err)
	require.False(t, f.Crash)

	f, err = ParseFeatures("all")
	require.NoError(t, err)
	require.True(t, f.TSCPage(), "time offers the TSC page")
	f, err = ParseFeatures("all,tsc-page=off")
	require.NoError(t, err)
	require.True(t, f.Time)
	require.False(t, f.TSCPage())
	require.Contains(t, f.String(), "tsc-page=off")
	again, err := ParseFeatures(f.String())
	require.NoError(t, err)
	require.Equal(t, f, again, "String round-trips")
	f, err = ParseFeatures("time,tsc-page=off,tsc-page")
	require.NoError(t, err)
	require.True(t, f.TSCPage(), "a later item wins")
}

func TestParseFeaturesErrors(t *testing.T) {
	for list, msg := range map[string]string{
		"stimer":                           "stimer needs synic",
		"vpindex,synic,stimer":             "stimer needs time",
		"synic":                            "synic needs vpindex",
		"vpindex,synic,time,stimer-direct": "stimer-direct needs stimer",
		"tlbflush":                         "tlbflush needs vpindex",
		"ipi":                              "ipi needs vpindex",
		"bogus":                            `unknown switch "bogus"`,
		"spinlocks":                        "spinlocks needs a value",
		"spinlocks=12":                     "below the minimum",
		"spinlocks=zz":                     "not a 32-bit number",
		"vendor-id=0123456789abc":          "longer than 12 bytes",
		"relaxed=maybe":                    "want on or off",
		"time,tsc-page=no":                 "want on or off",
		"all,vpindex=off":                  "needs vpindex",
	} {
		_, err := ParseFeatures(list)
		require.ErrorIs(t, err, ErrFeatures, list)
		require.ErrorContains(t, err, msg, list)
	}
}

func leaf(t *testing.T, c *kvm.CPUID, fn uint32) kvm.CPUIDEntry {
	t.Helper()
	e := c.Get(fn, 0)
	require.NotNil(t, e, "leaf %#x", fn)
	return *e
}

func TestLeavesAdvertiseExactlyTheSwitches(t *testing.T) {
	f, err := ParseFeatures("all")
	require.NoError(t, err)
	c := &kvm.CPUID{Entries: f.Leaves(4)}
	v := leaf(t, c, LeafVendor)
	require.Equal(t, uint32(0x40000006), v.EAX)
	require.Equal(t, [3]uint32{0x7263694D, 0x666F736F, 0x76482074}, [3]uint32{v.EBX, v.ECX, v.EDX}, "Microsoft Hv")
	require.Equal(t, uint32(0x31237648), leaf(t, c, LeafInterface).EAX)
	feat := leaf(t, c, LeafFeatures)
	// VP_RUNTIME, TIME_REF_COUNT, SYNIC, SYNTIMERS, HYPERCALL, VP_INDEX, RESET, REFERENCE_TSC, FREQUENCIES.
	require.Equal(t, uint32(1<<0|1<<1|1<<2|1<<3|1<<5|1<<6|1<<7|1<<9|1<<11), feat.EAX)
	require.Equal(t, uint32(1<<4|1<<5), feat.EBX, "PostMessages, SignalEvents")
	require.Equal(t, uint32(1<<8|1<<10|1<<19), feat.EDX, "frequency MSRs, crash MSRs, direct stimers")
	hints := leaf(t, c, LeafHints)
	require.Equal(t, uint32(1<<2|1<<5|1<<9|1<<10|1<<11), hints.EAX)
	require.Equal(t, uint32(0xffffffff), hints.EBX)
	require.Equal(t, uint32(4), leaf(t, c, LeafLimits).EAX)

	f, err = ParseFeatures("all,tsc-page=off")
	require.NoError(t, err)
	c = &kvm.CPUID{Entries: f.Leaves(4)}
	require.Equal(t, uint32(1<<0|1<<1|1<<2|1<<3|1<<5|1<<6|1<<7|1<<11), leaf(t, c, LeafFeatures).EAX,
		"TIME_REF_COUNT without REFERENCE_TSC")

	f, err = ParseFeatures("relaxed,spinlocks=0x2000")
	require.NoError(t, err)
	c = &kvm.CPUID{Entries: f.Leaves(1)}
	require.Equal(t, uint32(1<<5), leaf(t, c, LeafFeatures).EAX, "only HYPERCALL")
	require.Zero(t, leaf(t, c, LeafFeatures).EDX)
	require.Equal(t, uint32(1<<5|1<<9), leaf(t, c, LeafHints).EAX)
	require.Equal(t, uint32(0x2000), leaf(t, c, LeafHints).EBX)
}

func TestApplyCPUIDHidesKVMUnlessAsked(t *testing.T) {
	base := func() *kvm.CPUID {
		return &kvm.CPUID{Entries: []kvm.CPUIDEntry{
			{Function: 1, ECX: 1 << 31},
			{Function: 0x40000000, EAX: 0x40000001, EBX: 0x4b4d564b, ECX: 0x564b4d56, EDX: 0x4d},
			{Function: 0x40000001, EAX: 0x1234},
			{Function: 0x40000010, EAX: 7},
		}}
	}
	f, err := ParseFeatures("vpindex,vendor-id=Linux KVM Hv")
	require.NoError(t, err)
	c := base()
	f.ApplyCPUID(c, 2)
	require.NotNil(t, c.Get(1, 0))
	require.Nil(t, c.Get(0x40000010, 0), "stale KVM leaves in the Hyper-V range go")
	require.Nil(t, c.Get(LeafKVMBase, 0))
	v := leaf(t, c, LeafVendor)
	require.Equal(t, "Linux KVM Hv", string(le32s(v.EBX, v.ECX, v.EDX)))

	f.KVMSignature = true
	c = base()
	f.ApplyCPUID(c, 2)
	k := leaf(t, c, LeafKVMBase)
	require.Equal(t, uint32(0x4b4d564b), k.EBX)
	require.Equal(t, uint32(LeafKVMBase+1), k.EAX)
	require.Equal(t, uint32(0x1234), leaf(t, c, LeafKVMBase+1).EAX)
	require.Equal(t, uint32(0x31237648), leaf(t, c, LeafInterface).EAX)

	c = base()
	Features{}.ApplyCPUID(c, 2)
	require.Equal(t, base(), c, "Hyper-V off changes nothing")
}

func le32s(regs ...uint32) []byte {
	var out []byte
	for _, r := range regs {
		out = append(out, byte(r), byte(r>>8), byte(r>>16), byte(r>>24))
	}
	return out
}

func TestDependents(t *testing.T) {
	require.Equal(t, []string{"synic", "tlbflush", "ipi", "stimer", "stimer-direct"}, Dependents("vpindex"))
	require.Equal(t, []string{"stimer", "stimer-direct"}, Dependents("time"))
	require.Empty(t, Dependents("relaxed"))
	f, err := ParseFeatures("all")
	require.NoError(t, err)
	// Every switch of "all" turned off with its dependents leaves a valid set.
	for _, s := range f.Switches() {
		off := append([]string{s}, Dependents(s)...)
		var keep []string
		for _, k := range f.Switches() {
			if !slices.Contains(off, k) {
				keep = append(keep, k)
			}
		}
		g := f
		for _, o := range off {
			*g.switches()[o] = false
		}
		require.NoError(t, g.Check(), "%s off", s)
		require.Equal(t, keep, g.Switches())
	}
}

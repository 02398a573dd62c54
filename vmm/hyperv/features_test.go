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
		f.SynIC && f.STimer && f.STimerDirect && f.TLBFlush && f.IPI && f.VAPIC)
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
	// VP_RUNTIME, TIME_REF_COUNT, SYNIC, SYNTIMERS, APIC_ACCESS, HYPERCALL, VP_INDEX, RESET, REFERENCE_TSC,
	// FREQUENCIES.
	require.Equal(t, uint32(1<<0|1<<1|1<<2|1<<3|1<<4|1<<5|1<<6|1<<7|1<<9|1<<11), feat.EAX)
	require.Equal(t, uint32(1<<4|1<<5), feat.EBX, "PostMessages, SignalEvents")
	require.Equal(t, uint32(1<<8|1<<10|1<<19), feat.EDX, "frequency MSRs, crash MSRs, direct stimers")
	hints := leaf(t, c, LeafHints)
	require.Equal(t, uint32(1<<2|1<<3|1<<5|1<<9|1<<10|1<<11), hints.EAX)
	require.Equal(t, uint32(0xffffffff), hints.EBX)
	require.Equal(t, uint32(4), leaf(t, c, LeafLimits).EAX)

	f, err = ParseFeatures("all,tsc-page=off")
	require.NoError(t, err)
	c = &kvm.CPUID{Entries: f.Leaves(4)}
	require.Equal(t, uint32(1<<0|1<<1|1<<2|1<<3|1<<4|1<<5|1<<6|1<<7|1<<11), leaf(t, c, LeafFeatures).EAX,
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

// TestWindowsPreset pins what Windows checks in the windows preset's leaves.
func TestWindowsPreset(t *testing.T) {
	f, err := ParseFeatures("windows")
	require.NoError(t, err)
	require.Equal(t, "relaxed,vpindex,runtime,time,frequencies,reset,synic,stimer,stimer-direct,tlbflush,ipi,vapic=auto,"+
		"spinlocks=0x1fff", f.String())
	f, err = f.ForHost(true)
	require.NoError(t, err)
	c := &kvm.CPUID{Entries: f.Leaves(2)}
	feat := leaf(t, c, LeafFeatures)
	for bit, name := range map[int]string{1: "TIME_REF_COUNT", 4: "APIC_ACCESS (hv-vapic)", 5: "HYPERCALL",
		6: "VP_INDEX", 9: "REFERENCE_TSC", 11: "ACCESS_FREQUENCY_MSRS"} {
		require.NotZero(t, feat.EAX&(1<<bit), "0x40000003 EAX bit %d %s", bit, name)
	}
	require.NotZero(t, feat.EDX&(1<<8), "frequency MSRs available")
	require.Zero(t, feat.EDX&(1<<10), "no crash MSRs: Windows would report its bugchecks through them, not to the user")
	hints := leaf(t, c, LeafHints)
	require.NotZero(t, hints.EAX&(1<<3), "APIC access MSRs recommended (hv-vapic)")
	require.Equal(t, uint32(0x1fff), hints.EBX)
	require.Equal(t, []uint32{MSREOI, MSRICR, MSRTPR}, f.KernelMSRs())
}

// TestTSCPageBringsVPIndex: Windows uses the TSC page only with 0x40000003
// EAX bits 5 (hypercall MSRs) and 6 (VP index) set, so whenever the page
// is offered both are, and the VP index MSR answers.
func TestTSCPageBringsVPIndex(t *testing.T) {
	for list, want := range map[string]bool{
		"time": true, "all": true, "windows": true, "relaxed,time,frequencies": true,
		"time,tsc-page=off": false, "relaxed": false, "frequencies": false,
	} {
		f, err := ParseFeatures(list)
		require.NoError(t, err)
		eax := leaf(t, &kvm.CPUID{Entries: f.Leaves(1)}, LeafFeatures).EAX
		require.Equal(t, want, eax&(1<<9) != 0, "%s: REFERENCE_TSC", list)
		require.NotZero(t, eax&(1<<5), "%s: HYPERCALL", list)
		require.Equal(t, want, eax&(1<<6) != 0, "%s: VP_INDEX", list)
		p := newTestPartition(t, list, 2)
		_, ok := p.ReadMSR(1, MSRVPIndex)
		require.Equal(t, want, ok, "%s: VP_INDEX MSR", list)
	}
}

// TestNoNestedLeaf: no feature set advertises leaf 0x4000000A (nested
// virtualization features), not even through leaves the host's KVM offers.
func TestNoNestedLeaf(t *testing.T) {
	for _, list := range []string{"relaxed", "all", "windows", "windows,kvm-signature", "all,vendor-id=Linux KVM Hv"} {
		f, err := ParseFeatures(list)
		require.NoError(t, err)
		c := &kvm.CPUID{Entries: []kvm.CPUIDEntry{
			{Function: 0x40000000, EAX: 0x4000000A, EBX: 0x4b4d564b, ECX: 0x564b4d56, EDX: 0x4d},
			{Function: 0x40000001, EAX: 0x1234},
			{Function: 0x4000000A, EAX: 0xffff},
		}}
		f.ApplyCPUID(c, 4)
		require.Less(t, leaf(t, c, LeafVendor).EAX, uint32(0x4000000A), list)
		for _, e := range c.Entries {
			require.False(t, e.Function >= 0x4000000A && e.Function < LeafKVMBase, "%s: leaf %#x", list, e.Function)
		}
	}
}

func TestFilterBitmap(t *testing.T) {
	f, err := ParseFeatures("all,vapic=off")
	require.NoError(t, err)
	require.Nil(t, f.KernelMSRs())
	require.Equal(t, make([]byte, FilterCount/8), f.FilterBitmap(), "every synthetic MSR exits to vmm")
	require.Nil(t, Features{VAPIC: true}.KernelMSRs(), "Hyper-V off")

	f, err = ParseFeatures("vapic")
	require.NoError(t, err)
	b := f.FilterBitmap()
	require.Len(t, b, FilterCount/8)
	for i := 0; i < FilterCount; i++ {
		msr := uint32(FilterBase + i)
		kernel := msr == MSREOI || msr == MSRICR || msr == MSRTPR
		require.Equal(t, kernel, b[i/8]&(1<<(i%8)) != 0, "MSR %#x", msr)
	}
}

// TestVAPICForHost: the presets offer vapic where the host's KVM serves
// the APIC MSRs and leave it out elsewhere; a vapic the user named is an
// error on such a host, and vapic=off always wins.
func TestVAPICForHost(t *testing.T) {
	for _, c := range []struct {
		list         string
		kernel, want bool
		err          bool
	}{
		{"windows", true, true, false},
		{"windows", false, false, false},
		{"all", false, false, false},
		{"all,vapic", false, false, true},
		{"vapic", false, false, true},
		{"vapic=on", true, true, false},
		{"windows,vapic=off", true, false, false},
		{"vapic=auto", true, true, false},
		{"relaxed", false, false, false},
	} {
		f, err := ParseFeatures(c.list)
		require.NoError(t, err, c.list)
		again, err := ParseFeatures(f.String())
		require.NoError(t, err)
		require.Equal(t, f, again, "%s: String round-trips", c.list)
		g, err := f.ForHost(c.kernel)
		if c.err {
			require.ErrorIs(t, err, ErrNoKernelAPIC, c.list)
			continue
		}
		require.NoError(t, err, c.list)
		require.Equal(t, c.want, g.VAPIC, c.list)
		require.False(t, g.VAPICAuto, "%s: resolved", c.list)
		require.Equal(t, c.want, leaf(t, &kvm.CPUID{Entries: g.Leaves(1)}, LeafFeatures).EAX&(1<<4) != 0, c.list)
		require.Equal(t, c.want, g.KernelMSRs() != nil, c.list)
	}
	_, err := ParseFeatures("vapic=maybe")
	require.ErrorContains(t, err, "want on, off or auto")
}

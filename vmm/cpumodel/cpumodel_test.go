package cpumodel

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/vmm/kvm"
)

// sapphireRapids is CPUID as captured on one of our build machines (an
// Intel Xeon, family 6 model 0xcf, with AVX-512 and AMX) with the CPUID
// instruction, 2026-12: the leaves --cpu rewrites.
func sapphireRapids() *kvm.CPUID {
	return &kvm.CPUID{Entries: []kvm.CPUIDEntry{
		{Function: 0x0, Index: 0, Flags: 0, EAX: 0x1c, EBX: 0x756e6547, ECX: 0x6c65746e, EDX: 0x49656e69},
		{Function: 0x1, Index: 0, Flags: 0, EAX: 0xc06f2, EBX: 0x1020800, ECX: 0xfffa3203, EDX: 0x1f8bfbff},
		{Function: 0x7, Index: 0, Flags: 1, EAX: 0x2, EBX: 0xf1bf2ffb, ECX: 0x1a415f46, EDX: 0x20814010},
		{Function: 0x7, Index: 1, Flags: 1, EAX: 0x1c30, EBX: 0x0, ECX: 0x0, EDX: 0x0},
		{Function: 0xd, Index: 0, Flags: 1, EAX: 0xe7, EBX: 0xa80, ECX: 0x2b00, EDX: 0x0},
		{Function: 0xd, Index: 1, Flags: 1, EAX: 0x1f, EBX: 0x980, ECX: 0x0, EDX: 0x0},
		{Function: 0xd, Index: 2, Flags: 1, EAX: 0x100, EBX: 0x240, ECX: 0x0, EDX: 0x0},
		{Function: 0xd, Index: 5, Flags: 1, EAX: 0x40, EBX: 0x440, ECX: 0x0, EDX: 0x0},
		{Function: 0xd, Index: 6, Flags: 1, EAX: 0x200, EBX: 0x480, ECX: 0x0, EDX: 0x0},
		{Function: 0xd, Index: 7, Flags: 1, EAX: 0x400, EBX: 0x680, ECX: 0x0, EDX: 0x0},
		{Function: 0xd, Index: 17, Flags: 1, EAX: 0x40, EBX: 0xac0, ECX: 0x2, EDX: 0x0},
		{Function: 0xd, Index: 18, Flags: 1, EAX: 0x2000, EBX: 0xb00, ECX: 0x6, EDX: 0x0},
		{Function: 0x80000000, Index: 0, Flags: 0, EAX: 0x80000021, EBX: 0x0, ECX: 0x0, EDX: 0x0},
		{Function: 0x80000001, Index: 0, Flags: 0, EAX: 0x0, EBX: 0x0, ECX: 0x121, EDX: 0x2c100800},
	}}
}

func mustHave(t *testing.T, c *kvm.CPUID, names ...string) {
	t.Helper()
	for _, n := range names {
		f, ok := Lookup(n)
		require.True(t, ok, n)
		require.True(t, has(c, f), "%s should be on", n)
	}
}

func mustLack(t *testing.T, c *kvm.CPUID, names ...string) {
	t.Helper()
	for _, n := range names {
		f, ok := Lookup(n)
		require.True(t, ok, n)
		require.False(t, has(c, f), "%s should be off", n)
	}
}

func apply(t *testing.T, spec string) *kvm.CPUID {
	t.Helper()
	s, err := Parse(spec)
	require.NoError(t, err, spec)
	c := sapphireRapids()
	require.NoError(t, s.Apply(c), spec)
	return c
}

func TestParse(t *testing.T) {
	s, err := Parse("host,-x2apic,+pcid,avx512f=off,vendor=AuthenticAMD,-SSE4.2,tsc-deadline=on")
	require.NoError(t, err)
	require.Equal(t, "host", s.Model)
	require.Equal(t, "AuthenticAMD", s.Vendor)
	require.Equal(t, []Switch{{"x2apic", false}, {"pcid", true}, {"avx512f", false}, {"sse4_2", false}, {"tsc_deadline_timer", true}}, s.Switches)

	for _, ok := range []string{"", "host", "x86-64-v1", "x86-64-v4,+aes", "-x2apic", "sse3=off"} {
		_, err := Parse(ok)
		require.NoError(t, err, ok)
	}
	z, _ := Parse("")
	require.True(t, z.IsHost())
	require.Equal(t, "host", z.String())

	for bad, msg := range map[string]string{
		"+nosuch":             `unknown CPU feature "nosuch"`,
		"vendor=Intel":        "exactly 12",
		"-x2apic,host":        "must come first",
		"x2apic":              "want host or a model",
		"host,,-x2apic":       "empty item",
		"avx=maybe":           "want avx=on or avx=off",
		"x86-64-v5":           "want host or a model (x86-64, x86-64-v1, x86-64-v2, x86-64-v3, x86-64-v4) first",
		"x86-64-v2,x86-64-v3": "must come first",
	} {
		_, err := Parse(bad)
		require.ErrorIs(t, err, ErrSpec, bad)
		require.ErrorContains(t, err, msg, bad)
	}
}

func TestTableConsistent(t *testing.T) {
	seen := map[string]bool{}
	bits := map[[4]uint32]string{}
	for _, f := range features {
		require.False(t, seen[f.Name], "duplicate %s", f.Name)
		seen[f.Name] = true
		k := [4]uint32{f.Leaf, f.Sub, uint32(f.Reg), uint32(f.Bit)}
		require.Empty(t, bits[k], "%s and %s share a bit", f.Name, bits[k])
		bits[k] = f.Name
		if f.Needs != "" {
			_, ok := Lookup(f.Needs)
			require.True(t, ok, "%s needs unknown %s", f.Name, f.Needs)
		}
		require.False(t, f.Level > 0 && !f.ISA, "%s: a level without ISA", f.Name)
	}
	for a, n := range aliases {
		require.True(t, seen[n], "alias %s -> %s", a, n)
	}
}

func TestHostUnchanged(t *testing.T) {
	require.Equal(t, sapphireRapids(), apply(t, "host"))
}

func TestHideX2APIC(t *testing.T) {
	c := apply(t, "host,-x2apic")
	require.Zero(t, c.Get(1, 0).ECX&(1<<21), "leaf 1 ECX bit 21")
	require.Equal(t, sapphireRapids().Get(1, 0).ECX&^(1<<21), c.Get(1, 0).ECX, "nothing else")
}

func TestHideAVXClearsDependentsAndXSAVEState(t *testing.T) {
	c := apply(t, "-avx")
	mustLack(t, c, "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "vaes", "vpclmulqdq", "avx_vnni", "avx512_bf16", "avx512_fp16")
	mustHave(t, c, "xsave", "sse4_2", "aes", "x2apic", "xsaves")
	root := c.Get(0xd, 0)
	require.Equal(t, uint32(0x3), root.EAX, "XCR0: x87 and SSE only")
	require.Equal(t, uint32(576), root.ECX, "legacy area and header only")
	for _, sub := range []uint32{2, 5, 6, 7} {
		require.Nil(t, c.Get(0xd, sub), "component %d", sub)
	}
	// This host lists AMX's components but does not offer AMX (leaf 7 EDX
	// bit 24 clear): they go as well.
	require.Nil(t, c.Get(0xd, 17))
}

func TestHideAVX512(t *testing.T) {
	c := apply(t, "host,-avx512f")
	mustLack(t, c, "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx512_vbmi2", "avx512_fp16", "avx512_bf16")
	mustHave(t, c, "avx", "avx2", "avx_vnni")
	root := c.Get(0xd, 0)
	require.Equal(t, uint32(0x7), root.EAX)
	require.Equal(t, uint32(0x240+0x100), root.ECX, "ends with the YMM component")
	require.NotNil(t, c.Get(0xd, 2))
}

func TestHideXSAVE(t *testing.T) {
	c := apply(t, "-xsave")
	mustLack(t, c, "xsave", "avx", "avx512f", "xsaveopt", "xsavec", "xsaves", "amx_tile", "amx_int8")
	for _, e := range c.Entries {
		if e.Function == 0xd {
			require.Zero(t, e.EAX|e.EBX|e.ECX|e.EDX, "sub-leaf %d", e.Index)
		}
	}
}

func TestModels(t *testing.T) {
	v1 := apply(t, "x86-64-v1")
	mustHave(t, v1, "fpu", "cmov", "cx8", "mmx", "fxsr", "sse", "sse2", "syscall",
		"x2apic", "apic", "pcid", "lm", "nx", "smep", "smap") // platform features stay
	mustLack(t, v1, "xsave", "pni", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "lahf_lm", "avx", "avx2", "aes", "pclmulqdq",
		"bmi1", "movbe", "avx512f", "rdrand", "rdseed", "adx", "sha_ni", "gfni", "amx_tile")

	v2 := apply(t, "x86-64-v2")
	mustHave(t, v2, "pni", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "lahf_lm")
	mustLack(t, v2, "avx", "avx2", "bmi1", "bmi2", "fma", "movbe", "f16c", "abm", "avx512f")

	v3 := apply(t, "x86-64-v3")
	mustHave(t, v3, "avx", "avx2", "bmi1", "bmi2", "fma", "movbe", "f16c", "abm", "xsave")
	mustLack(t, v3, "avx512f", "avx512vl", "aes", "vaes", "amx_tile", "avx_vnni")
	require.Equal(t, uint32(0x7), v3.Get(0xd, 0).EAX)

	v4 := apply(t, "x86-64-v4")
	mustHave(t, v4, "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
	mustLack(t, v4, "avx512ifma", "avx512_vbmi2", "avx512_fp16", "amx_tile")
	require.Equal(t, uint32(0xe7), v4.Get(0xd, 0).EAX)

	// A model plus a feature the host has.
	c := apply(t, "x86-64-v2,+aes,vendor=AuthenticAMD")
	mustHave(t, c, "aes", "sse4_2")
	b := c.Get(0, 0)
	require.Equal(t, "AuthenticAMD", string(le(b.EBX))+string(le(b.EDX))+string(le(b.ECX)))
	b = c.Get(0x80000000, 0)
	require.Equal(t, uint32(0x80000021), b.EAX, "max extended leaf kept")
	require.Equal(t, "Auth", string(le(b.EBX)))
}

func le(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

func TestRefusals(t *testing.T) {
	for spec, want := range map[string]error{
		"+svm":            ErrHostLacks, // an Intel host
		"+3dnow":          ErrHostLacks,
		"-avx,+avx2":      ErrSpec,
		"x86-64-v2,+avx2": ErrSpec, // avx2 needs avx, which v2 lacks
		"-xsave,+avx512f": ErrSpec,
	} {
		s, err := Parse(spec)
		require.NoError(t, err)
		err = s.Apply(sapphireRapids())
		require.ErrorIs(t, err, want, spec)
	}
	s, _ := Parse("+svm")
	err := s.Apply(sapphireRapids())
	require.EqualError(t, err, "feature not offered by this host's KVM: +svm (CPUID 0x80000001.0 ECX bit 2)")
	// Turned off, then on again: on.
	c := apply(t, "-avx,+avx")
	mustHave(t, c, "avx")
	mustHave(t, c, "avx2") // the last switch wins; dependents follow the result
	require.True(t, slices.ContainsFunc(c.Entries, func(e kvm.CPUIDEntry) bool { return e.Function == 0xd && e.Index == 2 }))
}

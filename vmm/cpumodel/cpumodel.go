// Package cpumodel is `--cpu SPEC`: which CPU a guest sees. A spec starts
// from the host (what KVM offers) or a named model, sets the vendor string
// and switches features on and off by the names Linux's /proc/cpuinfo and
// QEMU use; Apply rewrites a CPUID table accordingly, keeping the XSAVE leaf
// (and so the XCR0 the guest may set) consistent with the features left. KVM
// gates the MSRs it exposes on the same CPUID bits (x2APIC mode, TSC_AUX,
// SPEC_CTRL, XSS, ...), so setting the table is enough for them.
package cpumodel

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vmmdev/vmm/vmm/kvm"
)

// Sentinel errors.
var (
	// ErrSpec: the spec does not parse (usage error).
	ErrSpec = errors.New("bad --cpu spec")
	// ErrHostLacks: the spec adds a feature the host's KVM does not offer.
	ErrHostLacks = errors.New("feature not offered by this host's KVM")
)

// Host is the spec of today's default: KVM's supported CPUID as it is.
const Host = "host"

// Models are the named models: the x86-64 psABI microarchitecture levels.
// Each keeps the instruction-set features of its level and below and clears
// every other one (Feature.ISA) the table knows; platform features stay as
// the host has them.
var models = map[string]Level{"x86-64": 1, "x86-64-v1": 1, "x86-64-v2": 2, "x86-64-v3": 3, "x86-64-v4": 4}

// ModelNames lists the named models, for usage text.
func ModelNames() []string {
	var n []string
	for k := range models {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}

// Switch turns one feature on or off.
type Switch struct {
	Name string // the table's name
	On   bool
}

// Spec is a parsed --cpu value. The zero Spec is "host".
type Spec struct {
	Model    string // "" or Host: the host; else a key of models
	Vendor   string // 12 bytes, or "" to keep the host's
	Switches []Switch
	text     string
}

func (s Spec) String() string {
	if s.text == "" {
		return Host
	}
	return s.text
}

// IsHost says the spec changes nothing.
func (s Spec) IsHost() bool {
	return (s.Model == "" || s.Model == Host) && s.Vendor == "" && len(s.Switches) == 0
}

// normalize folds QEMU's spellings (dashes, dots, upper case) to Linux's.
func normalize(name string) string {
	n := strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToLower(name))
	if a, ok := aliases[n]; ok {
		return a
	}
	return n
}

// Lookup finds a feature by a Linux or QEMU name.
func Lookup(name string) (Feature, bool) {
	n := normalize(name)
	for _, f := range features {
		if f.Name == n {
			return f, true
		}
	}
	return Feature{}, false
}

// Parse reads SPEC: comma-separated items; the first may be "host" or a
// model name, then any of +FEATURE, -FEATURE, FEATURE=on|off and
// vendor=STRING (exactly 12 characters). Later switches of a feature win.
func Parse(text string) (Spec, error) {
	s := Spec{text: text}
	if strings.TrimSpace(text) == "" {
		return Spec{}, nil
	}
	for i, item := range strings.Split(text, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
			return Spec{}, fmt.Errorf("%w: empty item in %q", ErrSpec, text)
		case i == 0 && (item == Host || models[item] != 0):
			s.Model = item
		case strings.HasPrefix(item, "vendor="):
			v := strings.TrimPrefix(item, "vendor=")
			if len(v) != vendorLen {
				return Spec{}, fmt.Errorf("%w: vendor=%q is %d bytes; a CPUID vendor string is exactly 12 (e.g. GenuineIntel, AuthenticAMD)", ErrSpec, v, len(v))
			}
			s.Vendor = v
		case item == Host || models[item] != 0:
			return Spec{}, fmt.Errorf("%w: %q names a model; it must come first", ErrSpec, item)
		default:
			sw, err := parseSwitch(item)
			if err != nil {
				return Spec{}, err
			}
			s.Switches = append(s.Switches, sw)
		}
	}
	return s, nil
}

func parseSwitch(item string) (Switch, error) {
	name, on := item, true
	switch {
	case strings.HasPrefix(item, "+"):
		name = item[1:]
	case strings.HasPrefix(item, "-"):
		name, on = item[1:], false
	case strings.Contains(item, "="):
		k, v, _ := strings.Cut(item, "=")
		switch v {
		case "on":
		case "off":
			on = false
		default:
			return Switch{}, fmt.Errorf("%w: %q: want %s=on or %s=off", ErrSpec, item, k, k)
		}
		name = k
	default:
		return Switch{}, fmt.Errorf("%w: %q: want host or a model (%s) first, then +FEATURE, -FEATURE or vendor=STRING",
			ErrSpec, item, strings.Join(ModelNames(), ", "))
	}
	f, ok := Lookup(name)
	if !ok {
		return Switch{}, fmt.Errorf("%w: unknown CPU feature %q", ErrSpec, name)
	}
	return Switch{Name: f.Name, On: on}, nil
}

func reg(e *kvm.CPUIDEntry, r Reg) *uint32 {
	return [...]*uint32{&e.EAX, &e.EBX, &e.ECX, &e.EDX}[r]
}

// has says the table sets f.
func has(c *kvm.CPUID, f Feature) bool {
	e := c.Get(f.Leaf, f.Sub)
	return e != nil && *reg(e, f.Reg)&(1<<f.Bit) != 0
}

func set(c *kvm.CPUID, f Feature, on bool) {
	e := c.Get(f.Leaf, f.Sub)
	if e == nil {
		return
	}
	if on {
		*reg(e, f.Reg) |= 1 << f.Bit
	} else {
		*reg(e, f.Reg) &^= 1 << f.Bit
	}
}

// Apply rewrites c, a vCPU's CPUID table built from what KVM offers (so
// that it tells what the host can give), for s. A switch that turns on a
// feature c lacks is ErrHostLacks; one that turns on a feature whose
// prerequisite the spec turns off is ErrSpec. Turning a feature off also
// turns off everything that needs it, and its XSAVE state components.
func (s Spec) Apply(c *kvm.CPUID) error {
	if s.IsHost() {
		return nil
	}
	offered := &kvm.CPUID{Entries: slices.Clone(c.Entries)}
	if lvl, ok := models[s.Model]; ok {
		for _, f := range features {
			if f.ISA && (f.Level == 0 || f.Level > lvl) {
				set(c, f, false)
			}
		}
	}
	for _, sw := range s.Switches {
		f, _ := Lookup(sw.Name)
		if sw.On && !has(offered, f) {
			return fmt.Errorf("%w: +%s (CPUID %#x.%d %v bit %d)", ErrHostLacks, f.Name, f.Leaf, f.Sub, f.Reg, f.Bit)
		}
		set(c, f, sw.On)
	}
	// Dependencies: clear what needs a cleared feature, until nothing changes.
	for changed := true; changed; {
		changed = false
		for _, f := range features {
			if f.Needs == "" || !has(c, f) {
				continue
			}
			if need, _ := Lookup(f.Needs); !has(c, need) {
				if s.asked(f.Name) {
					return fmt.Errorf("%w: +%s needs %s, which the spec turns off", ErrSpec, f.Name, need.Name)
				}
				set(c, f, false)
				changed = true
			}
		}
	}
	fixXSAVE(c)
	if s.Vendor != "" {
		setVendor(c, s.Vendor)
	}
	return nil
}

// asked says the spec turns name on explicitly (its last switch of it).
func (s Spec) asked(name string) bool {
	on := false
	for _, sw := range s.Switches {
		if sw.Name == name {
			on = sw.On
		}
	}
	return on
}

// fixXSAVE makes leaf 0xD describe only the state components of features
// left on: the XCR0 bits of sub-leaf 0 (which bound what the guest may set in
// XCR0: KVM refuses XSETBV beyond them), the sub-leaves of the others and the
// maximum area size. Without XSAVE the leaf is emptied.
func fixXSAVE(c *kvm.CPUID) {
	xsave, _ := Lookup("xsave")
	if !has(c, xsave) {
		for i := range c.Entries {
			if c.Entries[i].Function == leafXSAVE {
				e := &c.Entries[i]
				e.EAX, e.EBX, e.ECX, e.EDX = 0, 0, 0, 0
			}
		}
		return
	}
	var drop uint64
	for _, f := range features {
		if f.XSAVEState != 0 && !has(c, f) {
			drop |= f.XSAVEState
		}
	}
	root := c.Get(leafXSAVE, 0)
	if root == nil {
		return
	}
	root.EAX &^= uint32(drop)
	root.EDX &^= uint32(drop >> 32)
	xcr0 := uint64(root.EDX)<<32 | uint64(root.EAX)
	size := uint32(xsaveAreaBase)
	out := c.Entries[:0]
	for _, e := range c.Entries {
		if e.Function == leafXSAVE && e.Index >= 2 && e.Index <= xsaveMaxComp && drop&(1<<e.Index) != 0 {
			continue
		}
		if e.Function == leafXSAVE && e.Index >= 2 && e.Index <= xsaveMaxComp && xcr0&(1<<e.Index) != 0 {
			size = max(size, e.EBX+e.EAX) // user components: EBX offset, EAX size
		}
		out = append(out, e)
	}
	c.Entries = out
	root = c.Get(leafXSAVE, 0)
	root.ECX = size
}

// setVendor writes the 12-byte vendor string as EBX, EDX, ECX of leaf 0 and
// of the extended leaf 0x80000000, where CPUs repeat it.
func setVendor(c *kvm.CPUID, v string) {
	word := func(i int) uint32 {
		return uint32(v[i]) | uint32(v[i+1])<<8 | uint32(v[i+2])<<16 | uint32(v[i+3])<<24
	}
	for _, leaf := range []uint32{leafVendor, leafExtMax} {
		if e := c.Get(leaf, 0); e != nil {
			e.EBX, e.EDX, e.ECX = word(0), word(4), word(8)
		}
	}
}

// Package hyperv emulates Hyper-V enlightenments in userspace, for KVM hosts
// with and without in-kernel Hyper-V support: the 0x4000000x CPUID leaves,
// the synthetic MSRs (reached through an MSR filter and userspace MSR exits),
// hypercalls through a hypercall page whose code exits to the VMM, the
// reference TSC page, SynIC message and event pages, synthetic timers, crash
// and reset MSRs, and a per-access trace with a summary of what the guest used.
//
// Partition is the state of one VM; the VMM supplies a Host (interrupt
// injection, vCPU kicks, TLB flushes, stop callbacks) and guest memory.
package hyperv

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ErrFeatures marks an invalid --hyperv list: unknown switch, bad value or a
// missing dependency.
var ErrFeatures = errors.New("hyperv: invalid feature list")

// Features are the enlightenment switches, named after QEMU's hv-* flags.
// The zero value is Hyper-V off.
type Features struct {
	Relaxed      bool // relaxed timing recommended
	VPIndex      bool // VP_INDEX MSR
	Runtime      bool // VP_RUNTIME MSR
	Time         bool // TIME_REF_COUNT and the reference TSC page (which brings the VP index MSR)
	Frequencies  bool // TSC and APIC frequency MSRs
	Crash        bool // crash MSRs P0-P4 and CRASH_CTL
	Reset        bool // reset MSR
	SynIC        bool // synthetic interrupt controller
	STimer       bool // synthetic timers 0-3
	STimerDirect bool // synthetic timers in direct (APIC vector) mode
	TLBFlush     bool // remote TLB flush hypercalls
	IPI          bool // synthetic cluster IPI hypercalls
	// VAPIC offers the APIC access MSRs (EOI, ICR, TPR) as QEMU's hv-vapic
	// does; KVM's in-kernel LAPIC serves them (see KernelMSRs), so the host
	// needs KVM's Hyper-V support. VAPICAuto ("vapic=auto", what the
	// presets say) offers them only where the host has it (ForHost).
	VAPIC     bool
	VAPICAuto bool
	// NoTSCPage withholds the reference TSC page from Time ("tsc-page=off",
	// a vmm switch QEMU lacks): the guest then reads time through the
	// TIME_REF_COUNT MSR (Linux: hyperv_clocksource_msr), so the cost of
	// that clocksource can be measured.
	NoTSCPage bool
	// KernelTimers ("kernel-timers") leaves the synthetic timers, with
	// TIME_REF_COUNT and the reference TSC page they count against, to
	// KVM's own Hyper-V code where the host has it (ForHost; kernel.go):
	// a timer WRMSR then never exits to vmm. Elsewhere the timers stay in
	// vmm, as without it.
	KernelTimers bool
	// Spinlocks is the spinlock retry count (CPUID 0x40000004 EBX); 0 means
	// the default 0xFFFFFFFF, "never notify".
	Spinlocks uint32
	// VendorID replaces "Microsoft Hv" in CPUID 0x40000000 (at most 12 bytes).
	VendorID string
	// KVMSignature keeps KVM's own leaves, moved to 0x40000100 as QEMU does.
	// Linux then prefers KVM over Hyper-V, so it is off unless asked for.
	KVMSignature bool
	// on is set once any switch was given, so "--hyperv relaxed" alone still
	// turns on the base interface (hypercall page, guest OS ID).
	on bool
}

// DefaultSpinlocks is the spinlock retry count that means "never notify".
const DefaultSpinlocks = 0xFFFFFFFF

// Enabled reports whether Hyper-V is on at all.
func (f Features) Enabled() bool { return f.on }

// switches maps switch names to the field they set.
func (f *Features) switches() map[string]*bool {
	return map[string]*bool{
		"relaxed": &f.Relaxed, "vpindex": &f.VPIndex, "runtime": &f.Runtime, "time": &f.Time,
		"frequencies": &f.Frequencies, "crash": &f.Crash, "reset": &f.Reset, "synic": &f.SynIC,
		"stimer": &f.STimer, "stimer-direct": &f.STimerDirect, "tlbflush": &f.TLBFlush, "ipi": &f.IPI,
		"vapic": &f.VAPIC, "kvm-signature": &f.KVMSignature,
	}
}

// presets expand to switch lists. "all" is every enlightenment vmm offers;
// "windows" is what QEMU's documentation (docs/system/i386/hyperv.rst) and
// Proxmox recommend for Windows guests (docs/windows.md says why each).
var presetNames = []string{"all", "windows"}

func preset(name string) []string {
	switch name {
	case "all":
		return []string{"relaxed", "vpindex", "runtime", "time", "frequencies", "crash", "reset",
			"synic", "stimer", "stimer-direct", "tlbflush", "ipi", "vapic=auto"}
	case "windows":
		return []string{"relaxed", "vpindex", "runtime", "time", "frequencies", "reset",
			"synic", "stimer", "stimer-direct", "tlbflush", "ipi", "vapic=auto", "spinlocks=0x1fff"}
	}
	return nil
}

// ParseFeatures reads a comma-separated list of switches and presets, as
// given to --hyperv: "all", "windows", "relaxed,vpindex,spinlocks=0x1fff",
// "vendor-id=STR". An empty list or "off" is Hyper-V off. Later items add
// to earlier ones. Dependencies are checked (Check).
func ParseFeatures(list string) (Features, error) {
	var f Features
	list = strings.TrimSpace(list)
	if list == "" || list == "off" || list == "none" {
		return f, nil
	}
	sw := f.switches()
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		// "base" (what String says for no switches): the hypercall
		// interface alone.
		if item == "base" {
			f.on = true
			continue
		}
		if p := preset(item); p != nil {
			for _, s := range p {
				if err := f.apply(sw, s); err != nil {
					return Features{}, err
				}
			}
			continue
		}
		if err := f.apply(sw, item); err != nil {
			return Features{}, err
		}
	}
	if err := f.Check(); err != nil {
		return Features{}, err
	}
	return f, nil
}

func (f *Features) apply(sw map[string]*bool, item string) error {
	name, val, hasVal := strings.Cut(item, "=")
	f.on = true
	switch name {
	case "spinlocks":
		if !hasVal {
			return fmt.Errorf("%w: spinlocks needs a value (spinlocks=N)", ErrFeatures)
		}
		n, err := strconv.ParseUint(val, 0, 32)
		if err != nil {
			return fmt.Errorf("%w: spinlocks=%q is not a 32-bit number", ErrFeatures, val)
		}
		// QEMU's lower bound: fewer retries than this is not a sensible hint.
		if n < 0xfff {
			return fmt.Errorf("%w: spinlocks=%#x is below the minimum 0xfff", ErrFeatures, n)
		}
		f.Spinlocks = uint32(n)
		return nil
	case "tsc-page":
		on, err := switchValue(name, val, hasVal)
		if err != nil {
			return err
		}
		f.NoTSCPage = !on
		return nil
	case "kernel-timers":
		on, err := switchValue(name, val, hasVal)
		if err != nil {
			return err
		}
		f.KernelTimers = on
		return nil
	case "vapic":
		f.VAPICAuto = hasVal && val == "auto"
		if f.VAPICAuto {
			f.VAPIC = true
			return nil
		}
		if _, err := switchValue(name, val, hasVal); err != nil {
			return fmt.Errorf("%w: vapic=%q: want on, off or auto", ErrFeatures, val)
		}
	case "vendor-id":
		if !hasVal || val == "" {
			return fmt.Errorf("%w: vendor-id needs a value (vendor-id=STR)", ErrFeatures)
		}
		if len(val) > 12 {
			return fmt.Errorf("%w: vendor-id=%q is longer than 12 bytes", ErrFeatures, val)
		}
		f.VendorID = val
		return nil
	}
	p, ok := sw[name]
	if !ok {
		known := make([]string, 0, len(sw)+4)
		for k := range sw {
			known = append(known, k)
		}
		known = append(known, "base", "kernel-timers", "spinlocks=N", "tsc-page=off", "vapic=auto", "vendor-id=STR")
		known = append(known, presetNames...)
		slices.Sort(known)
		return fmt.Errorf("%w: unknown switch %q (known: %s)", ErrFeatures, item, strings.Join(known, ", "))
	}
	on, err := switchValue(name, val, hasVal)
	if err != nil {
		return err
	}
	*p = on
	return nil
}

// switchValue reads a switch's optional =on/=off; a bare switch is on.
func switchValue(name, val string, hasVal bool) (bool, error) {
	if !hasVal {
		return true, nil
	}
	switch val {
	case "on", "true", "1":
		return true, nil
	case "off", "false", "0":
		return false, nil
	}
	return false, fmt.Errorf("%w: %s=%q: want on or off", ErrFeatures, name, val)
}

// Kernel reports whether the timers are to be KVM's (kernel-timers, which
// without stimer says nothing: an ablation may turn stimer off alone).
func (f Features) Kernel() bool { return f.KernelTimers && f.STimer }

// TSCPage reports whether the reference TSC page is offered.
func (f Features) TSCPage() bool { return f.Time && !f.NoTSCPage }

// ErrNoKernelAPIC marks vapic asked for on a host whose KVM cannot serve
// the APIC access MSRs.
var ErrNoKernelAPIC = errors.New("hyperv: vapic needs KVM's in-kernel Hyper-V APIC MSRs (KVM_CAP_HYPERV_VAPIC), " +
	"which this host lacks; add vapic=off")

// ForHost resolves vapic for a host: kernelAPIC says whether its KVM
// serves the APIC access MSRs. vapic=auto becomes on or off; a plain vapic
// on a host without is ErrNoKernelAPIC.
func (f Features) ForHost(kernelAPIC bool) (Features, error) {
	switch {
	case !f.VAPIC || kernelAPIC:
	case f.VAPICAuto:
		f.VAPIC = false
	default:
		return f, ErrNoKernelAPIC
	}
	f.VAPICAuto = false
	return f, nil
}

// dependencies lists which switch needs which (those of QEMU), by name.
func dependencies() [][2]string {
	return [][2]string{
		{"synic", "vpindex"},
		{"stimer", "synic"},
		{"stimer", "time"},
		{"stimer-direct", "stimer"},
		{"tlbflush", "vpindex"},
		{"ipi", "vpindex"},
	}
}

// Check enforces the dependencies between switches (those of QEMU).
func (f Features) Check() error {
	sw := f.switches()
	for _, d := range dependencies() {
		if *sw[d[0]] && !*sw[d[1]] {
			return fmt.Errorf("%w: %s needs %s", ErrFeatures, d[0], d[1])
		}
	}
	return nil
}

// Dependents lists the switches that need name, directly or through
// others, in dependency order: turning name off must turn these off too.
func Dependents(name string) []string {
	var out []string
	seen := map[string]bool{name: true}
	for queue := []string{name}; len(queue) > 0; queue = queue[1:] {
		for _, d := range dependencies() {
			if d[1] == queue[0] && !seen[d[0]] {
				seen[d[0]] = true
				out = append(out, d[0])
				queue = append(queue, d[0])
			}
		}
	}
	return out
}

// Switches lists the on/off switches that are on, in a fixed order (the
// order of String): the ones an ablation turns off one at a time.
func (f Features) Switches() []string {
	var out []string
	sw := f.switches()
	for _, n := range switchOrder() {
		if *sw[n] {
			out = append(out, n)
		}
	}
	return out
}

func switchOrder() []string {
	return []string{"relaxed", "vpindex", "runtime", "time", "frequencies", "crash", "reset",
		"synic", "stimer", "stimer-direct", "tlbflush", "ipi", "vapic", "kvm-signature"}
}

// String lists the switches that are on, in ParseFeatures syntax.
func (f Features) String() string {
	if !f.on {
		return "off"
	}
	out := f.Switches()
	if f.VAPICAuto {
		out[slices.Index(out, "vapic")] = "vapic=auto"
	}
	if f.Time && f.NoTSCPage {
		out = append(out, "tsc-page=off")
	}
	if f.Kernel() {
		out = append(out, "kernel-timers")
	}
	if f.Spinlocks != 0 {
		out = append(out, fmt.Sprintf("spinlocks=%#x", f.Spinlocks))
	}
	if f.VendorID != "" {
		out = append(out, "vendor-id="+f.VendorID)
	}
	if len(out) == 0 {
		return "base"
	}
	return strings.Join(out, ",")
}

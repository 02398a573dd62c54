package vmm

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/vmmdev/vmm/vmm/kvm"
)

// Virtualization says how this host's /dev/kvm runs guests.
type Virtualization string

const (
	// VirtHardware: the CPU has VMX or SVM and KVM uses it.
	VirtHardware Virtualization = "hardware"
	// VirtPVM: KVM is the PVM flavour (kvm_pvm), which runs guest kernel code
	// through KVM's instruction emulator: tiny guests only, no real OS.
	VirtPVM Virtualization = "pvm"
	// VirtUnknown: KVM is there, but the CPU shows no virtualization extension.
	VirtUnknown Virtualization = "unknown"
	// VirtMissing: there is no KVM at the device path (DeviceStatus missing or no_driver).
	VirtMissing Virtualization = "missing"
	// VirtUnavailable: the device path exists but vmm cannot use it
	// (DeviceStatus permission_denied or unusable).
	VirtUnavailable Virtualization = "unavailable"
)

// ProbeResult is what `vmm probe` reports.
type ProbeResult struct {
	Device         string          `json:"device"`
	Available      bool            `json:"available"`
	DeviceStatus   KVMStatus       `json:"device_status"`
	Error          string          `json:"error,omitempty"`
	APIVersion     int             `json:"api_version,omitempty"`
	Virtualization Virtualization  `json:"virtualization"`
	CanBootLinux   bool            `json:"can_boot_linux"`
	MaxVCPUs       int             `json:"max_vcpus,omitempty"`
	Capabilities   map[string]int  `json:"capabilities,omitempty"`
	CPUIDLeaves    int             `json:"supported_cpuid_leaves,omitempty"`
	MSRs           int             `json:"msr_index_list,omitempty"`
	Missing        []string        `json:"missing_required,omitempty"`
	Notes          []string        `json:"notes,omitempty"`
	CPUFlags       map[string]bool `json:"cpu_flags"`
}

// probedCaps are the capabilities vmm uses; required ones are also checked by OpenKVM.
type probedCap struct {
	cap      kvm.Cap
	required bool
}

func probedCaps() []probedCap {
	return []probedCap{
		{kvm.CapIRQChip, true}, {kvm.CapUserMemory, true}, {kvm.CapPIT2, true}, {kvm.CapImmediateExit, true},
		{kvm.CapSetTSSAddr, false}, {kvm.CapSetIdentityMapAddr, false}, {kvm.CapIRQFD, false}, {kvm.CapIOEventFD, false},
		{kvm.CapSignalMSI, false}, {kvm.CapSplitIRQChip, false}, {kvm.CapReadonlyMem, false}, {kvm.CapMaxVCPUs, false},
		{kvm.CapNrVCPUs, false}, {kvm.CapX86UserSpaceMSR, false}, {kvm.CapX86MSRFilter, false}, {kvm.CapHyperV, false},
		{kvm.CapHyperVSynIC, false}, {kvm.CapTSCControl, false}, {kvm.CapGetTSCKHz, false}, {kvm.CapVCPUAttributes, false},
		{kvm.CapKVMClockCtrl, false}, {kvm.CapAdjustClock, false},
	}
}

// Probe inspects the host's KVM. It never fails: what it cannot find is reported.
func Probe(device string) ProbeResult {
	r := ProbeResult{Device: device, CPUFlags: cpuVirtFlags()}
	sys, err := openKVM(device)
	r.DeviceStatus = kvmStatus(err)
	if err != nil {
		// The host's kvm modules and CPU flags say nothing about a device
		// that is not there or cannot be opened: report the device instead.
		r.Error = err.Error()
		r.Virtualization = VirtUnavailable
		if r.DeviceStatus == KVMMissing || r.DeviceStatus == KVMNoDriver {
			r.Virtualization = VirtMissing
		}
		return r
	}
	defer sys.Close()
	r.Available = true
	r.Virtualization = hostVirtualization()
	if r.APIVersion, err = sys.APIVersion(); err != nil {
		r.Error = fmt.Sprintf("KVM_GET_API_VERSION: %v", err)
	}
	r.Capabilities = map[string]int{}
	for _, c := range probedCaps() {
		n, err := sys.CheckExtension(c.cap)
		if err != nil {
			n = 0
		}
		r.Capabilities[c.cap.String()] = n
		if c.required && n == 0 {
			r.Missing = append(r.Missing, c.cap.String())
		}
	}
	r.MaxVCPUs, _ = MaxVCPUs(sys)
	if c, err := sys.SupportedCPUID(); err == nil {
		r.CPUIDLeaves = len(c.Entries)
	}
	if l, err := sys.MSRIndexList(); err == nil {
		r.MSRs = len(l)
	}
	r.CanBootLinux = r.Virtualization == VirtHardware && len(r.Missing) == 0
	switch r.Virtualization {
	case VirtPVM:
		r.Notes = append(r.Notes, "this /dev/kvm is PVM, not hardware virtualization: guest kernel code runs through KVM's instruction emulator, so only tiny guests run here; real kernels boot in the nested test host")
	case VirtUnknown:
		r.Notes = append(r.Notes, "the CPU shows neither vmx nor svm: this KVM is not hardware virtualization")
	}
	if r.Capabilities[kvm.CapHyperV.String()] == 0 {
		r.Notes = append(r.Notes, "KVM has no in-kernel Hyper-V support; vmm emulates enlightenments in userspace (kernel-timers keeps vmm's timers)")
	}
	return r
}

func hostVirtualization() Virtualization {
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return VirtPVM
	}
	flags := cpuVirtFlags()
	if flags["vmx"] || flags["svm"] {
		return VirtHardware
	}
	return VirtUnknown
}

// cpuVirtFlags reads the virtualization flags of the first CPU in /proc/cpuinfo.
func cpuVirtFlags() map[string]bool {
	out := map[string]bool{"vmx": false, "svm": false, "hypervisor": false}
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, fl := range strings.Fields(v) {
			if _, want := out[fl]; want {
				out[fl] = true
			}
		}
		break
	}
	return out
}

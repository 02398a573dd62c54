package testhost

import (
	"fmt"
	"slices"

	"github.com/vmmdev/vmm/images/scenario"
)

// QEMUHyperVCPU is QEMU's -cpu value with the hv-* flags equivalent to
// vmm's --hyperv all, KVM's own signature hidden (kvm=off) as vmm hides it.
// In the nested test host QEMU gets them from the outer kernel's KVM.
const QEMUHyperVCPU = "host,kvm=off,hv-relaxed,hv-vpindex,hv-runtime,hv-time,hv-frequencies,hv-crash,hv-reset," +
	"hv-synic,hv-stimer,hv-stimer-direct,hv-tlbflush,hv-ipi,hv-vapic"

// KernelTimersHyperV is vmm's --hyperv list for benchmarks that compare a
// Hyper-V guest's I/O or exits with a peer whose timers are in the kernel
// (QEMU's, or a plain guest's LAPIC timer): every enlightenment, with KVM's
// synthetic timers where the host's KVM has them.
const KernelTimersHyperV = "all,kernel-timers"

// WithHyperV adds the Hyper-V enlightenments to a runner's arguments from
// Guest.Args: --hyperv all for vmm, QEMUHyperVCPU as QEMU's -cpu.
func WithHyperV(runner string, args []string) ([]string, error) {
	out := slices.Clone(args)
	switch runner {
	case scenario.RunnerVMM, "":
		return append(out, "--hyperv", "all"), nil
	case scenario.RunnerQEMU:
		i := slices.Index(out, "-cpu")
		if i < 0 || i+1 >= len(out) {
			return nil, fmt.Errorf("%w: QEMU arguments without -cpu", scenario.ErrInvalid)
		}
		out[i+1] = QEMUHyperVCPU
		return out, nil
	}
	return nil, fmt.Errorf("%w: unknown runner %q", scenario.ErrInvalid, runner)
}

package e2e

import (
	"fmt"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// densityScenario boots densityGuests guests of 128 MiB at once (a parallel
// scenario: the outer init starts every run together), each the agent's
// boot check on Debian's kernel, then power off. checkDensityReport sums
// their vmm overheads from the reports. The kernel is the unpacked vmlinux,
// booted by PVH: the twelve share the outer machine's one TCG vCPU, and
// the bzImage's XZ decompression made them reach the agent after about
// 225 s instead of about 125 s (nested runs, 2026-12-07). vmm copies the
// ELF's segments from the file into guest memory, so its own memory is
// what a bzImage boot costs.
const densityScenario = "density"

const (
	densityGuests = 12
	densityMiB    = 128
	// densityTimeout is each vmm's own limit: the outer machine's one TCG
	// vCPU boots all the kernels at once. The first nested run (2026-12-07,
	// bzImage, its host loaded with another outer machine) had every guest
	// at the agent after 353-373 s and powered off after 394-399 s; by PVH
	// they reached it after 122-148 s and powered off after 152-170 s.
	densityTimeout = 720 * time.Second
	// densityOwnLimitKiB bounds each vmm's own memory (the report's
	// overhead): the single-guest limit of TestKVMFootprint (cmd/vmm), as
	// the guests share nothing.
	densityOwnLimitKiB = 5 << 10
)

func newDensityScenario() (scenario.Scenario, error) {
	g := testhost.Guest{PVH: true, Quiet: true, MemoryMiB: densityMiB, Checks: []string{"boot"}, Timeout: densityTimeout}
	args, err := g.Args(scenario.RunnerVMM)
	if err != nil {
		return scenario.Scenario{}, err
	}
	return scenario.Scenario{Name: densityScenario, Args: args, WantExit: exitPoweroff,
		WantChecks: map[string]string{"boot": scenario.Pass}, Repeat: densityGuests, Parallel: true,
		Stream: true, Report: true, Timeout: (densityTimeout + 30*time.Second).String()}, nil
}

// densityReport is the part of vmm's report checkDensityReport reads.
type densityReport struct {
	Memory struct {
		PeakRSSKiB           uint64 `json:"peak_rss_kib"`
		GuestResidentPeakKiB uint64 `json:"guest_resident_peak_kib"`
		OverheadKiB          uint64 `json:"overhead_kib"`
	} `json:"memory"`
}

// checkDensityReport checks that every guest reported, each vmm's own memory
// is within densityOwnLimitKiB, and sums them.
func checkDensityReport(console []string) (string, error) {
	reps, err := scenario.ParseReports[densityReport](console)
	if err != nil {
		return "", err
	}
	if len(reps) != densityGuests {
		return "", fmt.Errorf("want %d reports, have %d", densityGuests, len(reps))
	}
	var own, guest, most uint64
	least := ^uint64(0)
	for i, r := range reps {
		m := r.Memory
		if m.GuestResidentPeakKiB == 0 || m.PeakRSSKiB == 0 {
			return "", fmt.Errorf("report %d has no memory figures: %+v", i+1, m)
		}
		own += m.OverheadKiB
		guest += m.GuestResidentPeakKiB
		most, least = max(most, m.OverheadKiB), min(least, m.OverheadKiB)
	}
	summary := fmt.Sprintf("%d guests of %d MiB: vmm's own memory %.1f MiB in all (each %.2f to %.2f MiB), guest RAM resident %.1f MiB in all",
		len(reps), densityMiB, kibMiB(own), kibMiB(least), kibMiB(most), kibMiB(guest))
	if most >= densityOwnLimitKiB {
		return summary, fmt.Errorf("a vmm's own memory reached %d KiB, over the limit of %d KiB: %s", most, densityOwnLimitKiB, summary)
	}
	return summary, nil
}

func kibMiB(kib uint64) float64 { return float64(kib) / 1024 }

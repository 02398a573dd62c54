package e2e

import (
	"fmt"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// balloonScenario: a 256 MiB guest with --balloon whose agent touches and
// frees 128 MiB (the balloon check). checkBalloonReport then reads vmm's
// report: free page reporting gave most of it back while the guest ran.
const balloonScenario = "balloon"

// balloonGivenBackKiB is the least the report must show given back: most of
// the 128 MiB the agent freed (Linux reports free 2 MiB blocks, and keeps
// some free memory it never reports).
const balloonGivenBackKiB = 96 << 10

func newBalloonScenario() (scenario.Scenario, error) {
	g := testhost.Guest{Quiet: true, MemoryMiB: 256, Checks: []string{"boot", "balloon"}, Timeout: 150 * time.Second}
	args, err := g.Args(scenario.RunnerVMM)
	if err != nil {
		return scenario.Scenario{}, err
	}
	args = append(args, "--balloon")
	return scenario.Scenario{Name: balloonScenario, Args: args, WantExit: exitPoweroff,
		WantChecks: map[string]string{"boot": scenario.Pass, "balloon": scenario.Pass}, Stream: true, Report: true,
		Timeout: (g.Timeout + 30*time.Second).String()}, nil
}

// balloonReport is the part of vmm's report checkBalloonReport reads.
type balloonReport struct {
	Memory struct {
		GuestResidentKiB     uint64 `json:"guest_resident_kib"`
		GuestResidentPeakKiB uint64 `json:"guest_resident_peak_kib"`
		OverheadKiB          uint64 `json:"overhead_kib"`
	} `json:"memory"`
	Devices struct {
		Balloon *struct {
			FreePageReports uint64 `json:"free_page_reports"`
			ReportedKiB     uint64 `json:"reported_kib"`
		} `json:"balloon"`
	} `json:"devices"`
}

// checkBalloonReport checks that the guest's resident memory fell back by
// most of what the agent freed, through free page reports.
func checkBalloonReport(console []string) (string, error) {
	reps, err := scenario.ParseReports[balloonReport](console)
	if err != nil {
		return "", err
	}
	if len(reps) != 1 {
		return "", fmt.Errorf("want one report, have %d", len(reps))
	}
	r := reps[0]
	b := r.Devices.Balloon
	if b == nil {
		return "", fmt.Errorf("the report has no balloon")
	}
	m := r.Memory
	summary := fmt.Sprintf("guest resident peak %d KiB, at the end %d KiB; %d reports gave back %d KiB; vmm's own %d KiB",
		m.GuestResidentPeakKiB, m.GuestResidentKiB, b.FreePageReports, b.ReportedKiB, m.OverheadKiB)
	if b.ReportedKiB < balloonGivenBackKiB || m.GuestResidentPeakKiB < m.GuestResidentKiB+balloonGivenBackKiB {
		return summary, fmt.Errorf("less than %d KiB given back: %s", balloonGivenBackKiB, summary)
	}
	return summary, nil
}

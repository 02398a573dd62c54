package e2e

import (
	"fmt"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// suspendScenario: the agent suspends the guest to RAM and lets the RTC
// alarm wake it (rtcwake -m mem -s 3), then checks it resumed with both
// CPUs: Linux takes CPU 1 offline before S3 and starts it again with
// INIT/SIPI after, which the suspend and cpus checks see.
// checkSleepReport reads vmm's record of the cycle. One vCPU's S3 is
// vmm's TestKVMS3RoundTrip.
const suspendScenario = "s3-rtcwake"

func suspendScenarios() ([]scenario.Scenario, error) {
	g := testhost.Guest{CPUs: 2, ExpectCPUs: 2, Quiet: true, Checks: []string{"boot", "suspend", "cpus"}, Timeout: 150 * time.Second}
	args, err := g.Args(scenario.RunnerVMM)
	if err != nil {
		return nil, err
	}
	return []scenario.Scenario{{Name: suspendScenario, Args: args, WantExit: exitPoweroff,
		WantChecks: map[string]string{"boot": scenario.Pass, "suspend": scenario.Pass, "cpus": scenario.Pass}, Stream: true, Report: true,
		Timeout: (g.Timeout + 30*time.Second).String()}}, nil
}

// sleepReport is the part of vmm's report checkSleepReport reads.
type sleepReport struct {
	Sleep *struct {
		Suspends int     `json:"suspends"`
		Resumes  int     `json:"resumes"`
		AsleepMS float64 `json:"asleep_ms"`
		LastWake string  `json:"last_wake"`
	} `json:"sleep"`
}

// checkSleepReport checks that vmm saw one S3 cycle, ended by the RTC alarm
// after at least the time the alarm was set ahead less its second of rounding.
func checkSleepReport(console []string) (string, error) {
	reps, err := scenario.ParseReports[sleepReport](console)
	if err != nil {
		return "", err
	}
	if len(reps) != 1 {
		return "", fmt.Errorf("want one report, have %d", len(reps))
	}
	s := reps[0].Sleep
	if s == nil {
		return "", fmt.Errorf("the report has no sleep record")
	}
	summary := fmt.Sprintf("%d suspend(s), %d resume(s), %.0f ms asleep, last woken by %q", s.Suspends, s.Resumes, s.AsleepMS, s.LastWake)
	if s.Suspends != 1 || s.Resumes != 1 || s.LastWake != "rtc alarm" || s.AsleepMS < 1500 {
		return summary, fmt.Errorf("want one S3 cycle of at least 1.5 s woken by the RTC alarm: %s", summary)
	}
	return summary, nil
}

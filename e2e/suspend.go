package e2e

import (
	"fmt"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The S3 scenarios: the agent suspends the guest to RAM and lets the RTC
// alarm wake it (rtcwake -m mem -s 3), then checks it resumed; with two
// vCPUs Linux takes the second offline before S3 and starts it again with
// INIT/SIPI after, which the cpus check after the suspend sees.
// checkSleepReport reads vmm's record of the cycle.
const (
	suspendScenario     = "s3-rtcwake"
	suspend2CPUScenario = "s3-rtcwake-2cpu"
)

func suspendScenarios() ([]scenario.Scenario, error) {
	specs := []struct {
		name string
		g    testhost.Guest
		want map[string]string
	}{
		{suspendScenario, testhost.Guest{Quiet: true, Checks: []string{"boot", "suspend"}},
			map[string]string{"boot": scenario.Pass, "suspend": scenario.Pass}},
		{suspend2CPUScenario, testhost.Guest{CPUs: 2, ExpectCPUs: 2, Quiet: true, Checks: []string{"boot", "suspend", "cpus"}},
			map[string]string{"boot": scenario.Pass, "suspend": scenario.Pass, "cpus": scenario.Pass}},
	}
	var list []scenario.Scenario
	for _, s := range specs {
		s.g.Timeout = 150 * time.Second
		args, err := s.g.Args(scenario.RunnerVMM)
		if err != nil {
			return nil, err
		}
		list = append(list, scenario.Scenario{Name: s.name, Args: args, WantExit: exitPoweroff,
			WantChecks: s.want, Stream: true, Report: true, Timeout: (s.g.Timeout + 30*time.Second).String()})
	}
	return list, nil
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

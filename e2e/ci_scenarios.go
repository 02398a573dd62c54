package e2e

import (
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// exitFailMatched is vmm's exit code when --fail matches (issue 6).
const exitFailMatched = 6

// appendCI adds the scenarios of the CI contract (issue 6) on a real Debian
// boot: --expect ends a guest that would otherwise hang with exit 0 as soon
// as the agent's summary appears, and --fail turns a kernel panic into exit
// 6 before vmm's own panic detection (exit 3) sees it. The plain panic and
// hang scenarios cover exits 3 and 4.
func appendCI(list []scenario.Scenario) ([]scenario.Scenario, error) {
	bootOnly := map[string]string{"boot": scenario.Pass}
	specs := []struct {
		name  string
		guest testhost.Guest
		args  []string
		exit  int
	}{
		{"expect-summary", testhost.Guest{Action: "hang", Quiet: true, Checks: []string{"boot"}},
			[]string{"--expect", `VMM-AGENT: summary pass=[0-9]+ fail=0`, "--fail", `fail=[1-9]`}, exitPoweroff},
		{"fail-panic", testhost.Guest{Action: "panic", Quiet: true, Checks: []string{"boot"}},
			[]string{"--fail", "Kernel panic", "--expect", "reboot: Power down"}, exitFailMatched},
	}
	for _, s := range specs {
		g := s.guest
		// A missed match would end as exit 4, not as a scenario timeout.
		g.Timeout = 150 * time.Second
		args, err := g.Args(scenario.RunnerVMM)
		if err != nil {
			return nil, err
		}
		list = append(list, scenario.Scenario{
			Name: s.name, Args: append(args, s.args...), WantExit: s.exit, WantChecks: bootOnly,
			Timeout: (g.Timeout + 30*time.Second).String(),
		})
	}
	return list, nil
}

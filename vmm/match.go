package vmm

import (
	"time"

	"github.com/vmmdev/vmm/vmm/conmatch"
)

// onMatch ends the VM on the first --expect or --fail match.
func (m *Machine) onMatch(c conmatch.Match) {
	if !m.started.IsZero() {
		m.matchedAt.CompareAndSwap(0, int64(max(time.Since(m.started), 1)))
	}
	kind := StopExpectMatched
	if c.Kind == conmatch.Fail {
		kind = StopFailMatched
	}
	m.latch.Stop(StopReason{Kind: kind, Source: "console", Detail: c.Line})
}

package hyperv

import (
	"fmt"
	"sort"
	"sync"
)

// Summary is what the guest used, for the run's report.
type Summary struct {
	Features string `json:"features"`
	// MSRs counts accesses per synthetic MSR name.
	MSRs map[string]MSRCount `json:"msrs"`
	// Hypercalls counts calls per hypercall name and status.
	Hypercalls map[string]HypercallCount `json:"hypercalls"`
	// HypercallPage and TSCPage are the guest-physical addresses the guest
	// enabled them at ("" when never enabled).
	HypercallPage string `json:"hypercall_page,omitempty"`
	TSCPage       string `json:"tsc_page,omitempty"`
	GuestOSID     string `json:"guest_os_id,omitempty"`
	// VPs is the per-vCPU SynIC and timer state.
	VPs []VPSummary `json:"vps"`
	// Crash holds P0-P4 when the guest reported a crash.
	Crash []string `json:"crash,omitempty"`
	// Timers says whose synthetic timers ran, with stimer: "userspace"
	// (vmm's) or "kernel" (KVM's, kernel-timers). KVM's are out of vmm's
	// sight: their MSR accesses, expiries and deliveries, TIME_REF_COUNT
	// and REFERENCE_TSC are not counted (VPs' timers, those MSRs and
	// TSCPage stay empty); NotCounted names them.
	Timers     string   `json:"timers,omitempty"`
	NotCounted []string `json:"not_counted,omitempty"`
}

// MSRCount is one MSR's access counts.
type MSRCount struct {
	Reads  uint64 `json:"reads"`
	Writes uint64 `json:"writes"`
	// GP counts accesses that got #GP.
	GP uint64 `json:"gp,omitempty"`
}

// HypercallCount is one hypercall's call count and result statuses.
type HypercallCount struct {
	Calls    uint64            `json:"calls"`
	Statuses map[string]uint64 `json:"statuses"`
}

// VPSummary is one vCPU's SynIC and timers.
type VPSummary struct {
	VP          int      `json:"vp"`
	SynIC       bool     `json:"synic"`
	SIMP        string   `json:"simp,omitempty"`
	SIEFP       string   `json:"siefp,omitempty"`
	SINTs       []string `json:"sints,omitempty"` // unmasked SINTs: "n:vector[:auto-eoi]"
	SINTsRaised uint64   `json:"sints_raised"`
	// AutoEOIs counts the in-service bits vmm cleared for auto-EOI SINTs
	// or, with KernelAutoEOI, the auto-EOI interrupts it left KVM to EOI.
	AutoEOIs      uint64         `json:"auto_eois,omitempty"`
	KernelAutoEOI bool           `json:"kernel_auto_eoi,omitempty"`
	Timers        []TimerSummary `json:"timers,omitempty"`
	TimerConfigs  uint64         `json:"timer_config_writes,omitempty"`
}

// TimerSummary is one synthetic timer's mode and activity.
type TimerSummary struct {
	Timer     int    `json:"timer"`
	Mode      string `json:"mode"` // "direct" or "message"
	Periodic  bool   `json:"periodic"`
	Vector    uint8  `json:"vector,omitempty"`
	SINT      int    `json:"sint,omitempty"`
	Expired   uint64 `json:"expired"`
	Delivered uint64 `json:"delivered"`
}

// stats accumulates counts for the summary.
type stats struct {
	mu            sync.Mutex
	msrs          map[string]*MSRCount
	calls         map[string]*HypercallCount
	hypercallPage uint64
	tscPage       uint64
	hasHCPage     bool
	hasTSCPage    bool
	crash         *[5]uint64
	sints         []uint64
	aeois         []uint64
	timerUsed     [][4]bool
	timerCfg      [][4]uint64 // last config written with enable set
	timerWrites   []uint64
}

func newStats(cpus int) *stats {
	return &stats{msrs: map[string]*MSRCount{}, calls: map[string]*HypercallCount{},
		sints: make([]uint64, cpus), aeois: make([]uint64, cpus),
		timerUsed: make([][4]bool, cpus), timerCfg: make([][4]uint64, cpus), timerWrites: make([]uint64, cpus)}
}

func (s *stats) msr(_ int, msr uint32, write, gp bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := msrName(msr)
	c := s.msrs[name]
	if c == nil {
		c = &MSRCount{}
		s.msrs[name] = c
	}
	if write {
		c.Writes++
	} else {
		c.Reads++
	}
	if gp {
		c.GP++
	}
}

func (s *stats) hypercall(code, status uint16) { s.hypercalls(code, status, 1) }

func (s *stats) hypercalls(code, status uint16, n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := hypercallName(code)
	c := s.calls[name]
	if c == nil {
		c = &HypercallCount{Statuses: map[string]uint64{}}
		s.calls[name] = c
	}
	c.Calls += n
	c.Statuses[statusName(status)] += n
}

func (s *stats) setHypercallPage(gpa uint64) {
	s.mu.Lock()
	s.hypercallPage, s.hasHCPage = gpa, true
	s.mu.Unlock()
}

func (s *stats) setTSCPage(gpa uint64) {
	s.mu.Lock()
	s.tscPage, s.hasTSCPage = gpa, true
	s.mu.Unlock()
}

func (s *stats) setCrash(p [5]uint64) {
	s.mu.Lock()
	s.crash = &p
	s.mu.Unlock()
}

func (s *stats) sintRaised(vcpu int) {
	s.mu.Lock()
	s.sints[vcpu]++
	s.mu.Unlock()
}

func (s *stats) autoEOI(vcpu int) {
	s.mu.Lock()
	s.aeois[vcpu]++
	s.mu.Unlock()
}

func (s *stats) timerConfig(vcpu int, t *stimer) {
	s.mu.Lock()
	s.timerUsed[vcpu][t.index] = true
	if t.enabled() {
		s.timerCfg[vcpu][t.index] = t.config
	}
	s.timerWrites[vcpu]++
	s.mu.Unlock()
}

func hex(v uint64) string { return fmt.Sprintf("%#x", v) }

// Summary returns what the guest has used so far. Safe at any time; meant
// for after the VM stopped.
func (p *Partition) Summary() Summary {
	s := p.stats
	out := Summary{Features: p.f.String(), MSRs: map[string]MSRCount{}, Hypercalls: map[string]HypercallCount{}}
	switch {
	case p.kernel:
		out.Timers = "kernel"
		out.NotCounted = []string{"STIMER0_CONFIG-STIMER3_COUNT", "timer expiries and deliveries"}
		if p.f.Time {
			out.NotCounted = append(out.NotCounted, "TIME_REF_COUNT")
		}
		if p.f.TSCPage() {
			out.NotCounted = append(out.NotCounted, "REFERENCE_TSC", "tsc_page")
		}
	case p.f.STimer:
		out.Timers = "userspace"
	}
	p.mu.Lock()
	if p.guestOSID != 0 {
		out.GuestOSID = hex(p.guestOSID)
	}
	p.mu.Unlock()
	s.mu.Lock()
	for k, v := range s.msrs {
		out.MSRs[k] = *v
	}
	for k, v := range s.calls {
		c := HypercallCount{Calls: v.Calls, Statuses: map[string]uint64{}}
		for st, n := range v.Statuses {
			c.Statuses[st] = n
		}
		out.Hypercalls[k] = c
	}
	if s.hasHCPage {
		out.HypercallPage = hex(s.hypercallPage)
	}
	if s.hasTSCPage {
		out.TSCPage = hex(s.tscPage)
	}
	if s.crash != nil {
		for _, c := range s.crash {
			out.Crash = append(out.Crash, hex(c))
		}
	}
	sints := append([]uint64(nil), s.sints...)
	aeois := append([]uint64(nil), s.aeois...)
	used := append([][4]bool(nil), s.timerUsed...)
	cfgs := append([][4]uint64(nil), s.timerCfg...)
	writes := append([]uint64(nil), s.timerWrites...)
	s.mu.Unlock()

	for i, v := range p.vps {
		v.mu.Lock()
		vs := VPSummary{VP: i, SynIC: v.scontrol&1 != 0, SINTsRaised: sints[i], AutoEOIs: aeois[i], TimerConfigs: writes[i],
			KernelAutoEOI: v.aeoiWhere == aeoiKernel}
		if v.simp&pageEnable != 0 {
			vs.SIMP = hex(v.simp & pageMask)
		}
		if v.siefp&pageEnable != 0 {
			vs.SIEFP = hex(v.siefp & pageMask)
		}
		for n, sv := range v.sint {
			if sv&sintMasked == 0 {
				d := fmt.Sprintf("%d:%#x", n, sv&sintVectorMask)
				if sv&sintAutoEOI != 0 {
					d += ":auto-eoi"
				}
				vs.SINTs = append(vs.SINTs, d)
			}
		}
		for n := range v.timers {
			t := &v.timers[n]
			if !used[i][n] {
				continue
			}
			// The mode is the last one the guest enabled: Linux clears the
			// config when it stops a timer.
			last := stimer{config: cfgs[i][n]}
			if last.config == 0 {
				last.config = t.config
			}
			ts := TimerSummary{Timer: n, Mode: "message", Periodic: last.periodic(), Expired: t.expired, Delivered: t.delivered}
			if last.direct() {
				ts.Mode, ts.Vector = "direct", last.vector()
			} else {
				ts.SINT = last.sint()
			}
			vs.Timers = append(vs.Timers, ts)
		}
		v.mu.Unlock()
		out.VPs = append(out.VPs, vs)
	}
	return out
}

// SortedMSRNames lists the MSR names of a summary in order, for printing.
func (s Summary) SortedMSRNames() []string {
	n := make([]string, 0, len(s.MSRs))
	for k := range s.MSRs {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

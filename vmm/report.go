package vmm

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/vmmdev/vmm/devices/pci"
)

// ReportVersion is the version of the report's JSON shape (docs/report.md).
// It changes only when a field changes meaning or disappears.
const ReportVersion = 1

// Report is the JSON document `vmm run --report FILE` writes when the VM
// ends. docs/report.md documents every field; report_test.go pins the shape.
type Report struct {
	Version int `json:"version"`
	// ExitCode is vmm's exit status; ExitSource names what produced it.
	ExitCode   int          `json:"exit_code"`
	ExitSource string       `json:"exit_source"`
	Stop       ReportStop   `json:"stop"`
	Timing     ReportTiming `json:"timing"`
	Match      *ReportMatch `json:"match"`
	// Exits counts vCPU exits by kind, summed over vCPUs.
	Exits   map[string]uint64 `json:"exits"`
	Devices ReportDevices     `json:"devices"`
	Memory  ReportMemory      `json:"memory"`
	// HyperV is the Hyper-V summary; absent when the enlightenments are off.
	HyperV any `json:"hyperv,omitempty"`
	// Sleep is the guest's suspend-to-RAM (ACPI S3) record; absent where
	// the platform offers no S3 (OVMF, --acpi reduced).
	Sleep *ReportSleep `json:"sleep,omitempty"`
}

// ReportSleep counts S3 cycles: entries, the wakes that ended them, the
// time spent asleep and what woke the guest last ("rtc alarm", "host").
type ReportSleep struct {
	Suspends int     `json:"suspends"`
	Resumes  int     `json:"resumes"`
	AsleepMS float64 `json:"asleep_ms"`
	LastWake string  `json:"last_wake"`
}

// ReportStop is the stop reason.
type ReportStop struct {
	Reason string `json:"reason"` // StopKind.String()
	Source string `json:"source"`
	Detail string `json:"detail"`
	// DebugExitValue is the value written to port 0xf4 (reason "debug-exit" only).
	DebugExitValue *uint32 `json:"debug_exit_value,omitempty"`
}

// ReportTiming holds durations from the start of the run, in milliseconds;
// null for events that did not happen.
type ReportTiming struct {
	FirstConsoleByteMS *float64 `json:"first_console_byte_ms"`
	MatchMS            *float64 `json:"match_ms"`
	WallMS             float64  `json:"wall_ms"`
	// StartUnixNS and StopUnixNS are wall-clock times (Unix nanoseconds) of
	// the start of the run and of the stop reason being recorded.
	StartUnixNS int64 `json:"start_unix_ns"`
	StopUnixNS  int64 `json:"stop_unix_ns"`
	// CommandUnixNS is when `vmm run` began, after the process and the Go
	// runtime had started (0 when not run by the command).
	CommandUnixNS int64 `json:"command_unix_ns,omitempty"`
}

// ReportMatch is the --expect/--fail match that ended the run.
type ReportMatch struct {
	Kind    string `json:"kind"` // "expect" or "fail"
	Pattern string `json:"pattern"`
	Line    string `json:"line"`
}

// ReportDevices are device statistics.
type ReportDevices struct {
	UnclaimedPIO  ReportUnclaimed `json:"unclaimed_pio"`
	UnclaimedMMIO ReportUnclaimed `json:"unclaimed_mmio"`
	// PIOPorts are the claimed I/O ports the guest used most, most first:
	// where its port I/O exits went.
	PIOPorts []ReportPort `json:"pio_ports,omitempty"`
	// PCIConfig counts PCI configuration accesses (mechanism #1 and
	// ECAM); absent without a PCI bus.
	PCIConfig *pci.ConfigStats `json:"pci_config,omitempty"`
	UART      ReportUART       `json:"uart"`
	// Balloon is absent without --balloon.
	Balloon *ReportBalloon `json:"balloon,omitempty"`
}

// ReportMemory is the VMM process's memory in KiB. PeakRSSKiB is the
// kernel's high-water mark of the whole resident set (VmHWM of
// /proc/self/status: anonymous, file-backed and shared pages, guest RAM
// included). Guest RAM resident is counted with mincore over the guest
// memory mappings: GuestResidentKiB at the end, GuestResidentPeakKiB the
// most at once (sampled at the end and before each balloon discard, the only
// way guest RAM leaves the resident set). OverheadKiB, vmm's own memory, is
// OwnAnonKiB plus PageTablesKiB at the sample where their sum was largest
// (vmm/rss.go says what and when).
type ReportMemory struct {
	PeakRSSKiB           uint64 `json:"peak_rss_kib"`
	GuestResidentKiB     uint64 `json:"guest_resident_kib"`
	GuestResidentPeakKiB uint64 `json:"guest_resident_peak_kib"`
	OverheadKiB          uint64 `json:"overhead_kib"`
	OwnAnonKiB           uint64 `json:"own_anon_kib"`
	PageTablesKiB        uint64 `json:"page_tables_kib"`
}

// ReportBalloon is the virtio-balloon's figures (--balloon): the balloon's
// size in 4 KiB pages as the driver last wrote it, pages inflated, deflated
// and ignored (outside guest RAM), free page reports and the memory they
// gave back, and the guest's last statistics (virtio names, bytes or
// counts) with how many times it sent them.
type ReportBalloon struct {
	ActualPages     uint32            `json:"actual_pages"`
	InflatedPages   uint64            `json:"inflated_pages"`
	DeflatedPages   uint64            `json:"deflated_pages"`
	IgnoredPages    uint64            `json:"ignored_pages"`
	FreePageReports uint64            `json:"free_page_reports"`
	ReportedKiB     uint64            `json:"reported_kib"`
	GuestStats      map[string]uint64 `json:"guest_stats"`
	StatsUpdates    uint64            `json:"stats_updates"`
}

// ReportUnclaimed counts accesses no device claimed.
type ReportUnclaimed struct {
	Reads  uint64 `json:"reads"`
	Writes uint64 `json:"writes"`
}

// ReportPort counts the guest's accesses to one I/O port (a string
// instruction's elements each count) and names the device there. Clamped:
// the count also holds the device's ports beyond this one.
type ReportPort struct {
	Port     uint64 `json:"port"`
	Device   string `json:"device"`
	Accesses uint64 `json:"accesses"`
	Clamped  bool   `json:"clamped,omitempty"`
}

// ReportUART counts console bytes: tx from the guest, rx to it.
type ReportUART struct {
	TxBytes uint64 `json:"tx_bytes"`
	RxBytes uint64 `json:"rx_bytes"`
}

// memory computes the report's memory figures (ReportMemory says how).
func (r Result) memory() ReportMemory {
	guestPeak := max(r.GuestResidentPeak, r.GuestResident)
	return ReportMemory{
		PeakRSSKiB:           r.PeakRSS >> 10,
		GuestResidentKiB:     r.GuestResident >> 10,
		GuestResidentPeakKiB: guestPeak >> 10,
		OverheadKiB:          r.Own.Total() >> 10,
		OwnAnonKiB:           r.Own.Anon >> 10,
		PageTablesKiB:        r.Own.PageTables >> 10,
	}
}

func msPtr(d time.Duration) *float64 {
	if d <= 0 {
		return nil
	}
	v := ms(d)
	return &v
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Report builds the run report; expect and fail are the patterns' source
// text (empty when not given).
func (r Result) Report(expect, fail string) Report {
	rep := Report{
		Version:    ReportVersion,
		ExitCode:   r.Reason.ExitCode(),
		ExitSource: r.Reason.Source,
		Stop: ReportStop{
			Reason: r.Reason.Kind.String(),
			Source: r.Reason.Source,
			Detail: r.Reason.Detail,
		},
		Timing: ReportTiming{
			FirstConsoleByteMS: msPtr(r.FirstOutput),
			MatchMS:            msPtr(r.Match),
			WallMS:             ms(r.Wall),
		},
		Exits: map[string]uint64{},
		Devices: ReportDevices{
			UnclaimedPIO:  ReportUnclaimed{r.UnclaimedPIO.UnclaimedReads, r.UnclaimedPIO.UnclaimedWrites},
			UnclaimedMMIO: ReportUnclaimed{r.UnclaimedMMIO.UnclaimedReads, r.UnclaimedMMIO.UnclaimedWrites},
			UART:          ReportUART{TxBytes: r.ConsoleOut, RxBytes: r.ConsoleIn},
			PCIConfig:     r.PCIConfig,
		},
		Memory: r.memory(),
		HyperV: r.HyperV,
	}
	for _, h := range r.UnclaimedPIO.Hot {
		rep.Devices.PIOPorts = append(rep.Devices.PIOPorts, ReportPort{Port: h.Addr, Device: h.Device, Accesses: h.Count, Clamped: h.Clamped})
	}
	if rep.ExitSource == "" {
		rep.ExitSource = "vmm"
	}
	if r.Reason.Err != nil {
		rep.Stop.Detail = r.Reason.Err.Error()
		if r.Reason.Detail != "" {
			rep.Stop.Detail = r.Reason.Detail + ": " + rep.Stop.Detail
		}
	}
	if r.Reason.Kind == StopDebugExit {
		v := r.Reason.Value
		rep.Stop.DebugExitValue = &v
	}
	switch r.Reason.Kind {
	case StopExpectMatched:
		rep.Match = &ReportMatch{Kind: "expect", Pattern: expect, Line: r.Reason.Detail}
	case StopFailMatched:
		rep.Match = &ReportMatch{Kind: "fail", Pattern: fail, Line: r.Reason.Detail}
	}
	if !r.Started.IsZero() {
		rep.Timing.StartUnixNS = r.Started.UnixNano()
	}
	if !r.StoppedAt.IsZero() {
		rep.Timing.StopUnixNS = r.StoppedAt.UnixNano()
	}
	for k, v := range r.Exits {
		rep.Exits[k] = v
	}
	if s := r.Sleep; s != nil {
		rep.Sleep = &ReportSleep{Suspends: s.Suspends, Resumes: s.Resumes, AsleepMS: ms(s.Asleep), LastWake: s.LastWake}
	}
	if b := r.Balloon; b != nil {
		rep.Devices.Balloon = &ReportBalloon{
			ActualPages: b.ActualPages, InflatedPages: b.InflatedPages, DeflatedPages: b.DeflatedPages,
			IgnoredPages: b.IgnoredPages, FreePageReports: b.Reports, ReportedKiB: b.ReportedBytes >> 10,
			GuestStats: b.Guest, StatsUpdates: b.StatsUpdates,
		}
		if rep.Devices.Balloon.GuestStats == nil {
			rep.Devices.Balloon.GuestStats = map[string]uint64{}
		}
	}
	return rep
}

// WriteReport encodes rep into f (opened before the VMM was locked down),
// replacing what it held, and syncs it so the report survives a host crash.
func WriteReport(f *os.File, rep Report) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	data = append(data, '\n')
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("write report %s: %w", f.Name(), err)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		return fmt.Errorf("write report %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync report %s: %w", f.Name(), err)
	}
	return nil
}

package vmm

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/bus"
	"github.com/vmmdev/vmm/devices/pci"
	"github.com/vmmdev/vmm/devices/virtio/balloon"
)

// TestReportShape pins the JSON shape documented in docs/report.md: a change
// here is a change of the documented contract (bump ReportVersion if a field
// changes meaning or disappears).
func TestReportShape(t *testing.T) {
	start := time.Unix(1700000000, 0)
	res := Result{
		Reason:        StopReason{Kind: StopFailMatched, Source: "console", Detail: "Kernel panic - not syncing"},
		Wall:          1500 * time.Millisecond,
		FirstOutput:   2 * time.Millisecond,
		Match:         1200 * time.Millisecond,
		Exits:         map[string]uint64{"io": 7, "mmio": 1},
		UnclaimedPIO:  bus.Stats{UnclaimedReads: 3, UnclaimedWrites: 4, Hot: []bus.Hit{{Addr: 0x608, Device: "acpi-pm", Count: 9}}},
		UnclaimedMMIO: bus.Stats{UnclaimedReads: 1},
		Started:       start,
		StoppedAt:     start.Add(1200 * time.Millisecond),
		PCIConfig: &pci.ConfigStats{Accesses: 12, Absent: 4, AbsentBuses: 1,
			Functions: []pci.FunctionAccesses{{BDF: "00:00.0", Present: true, Accesses: 8}}},
		ConsoleOut:    42,
		ConsoleIn:     5,
		HyperV:        map[string]int{"msr_reads": 2},
		PeakRSS:       20 << 20,
		GuestResident: 12 << 20,
		Own:           OwnMemory{Anon: 2 << 20, PageTables: 256 << 10},
	}
	rep := res.Report("summary pass", "Kernel panic")
	rep.Timing.CommandUnixNS = start.Add(-10 * time.Millisecond).UnixNano()
	got, err := json.MarshalIndent(rep, "", "  ")
	require.NoError(t, err)
	want := `{
  "version": 1,
  "exit_code": 6,
  "exit_source": "console",
  "stop": {
    "reason": "fail-matched",
    "source": "console",
    "detail": "Kernel panic - not syncing"
  },
  "timing": {
    "first_console_byte_ms": 2,
    "match_ms": 1200,
    "wall_ms": 1500,
    "start_unix_ns": 1700000000000000000,
    "stop_unix_ns": 1700000001200000000,
    "command_unix_ns": 1699999999990000000
  },
  "match": {
    "kind": "fail",
    "pattern": "Kernel panic",
    "line": "Kernel panic - not syncing"
  },
  "exits": {
    "io": 7,
    "mmio": 1
  },
  "devices": {
    "unclaimed_pio": {
      "reads": 3,
      "writes": 4
    },
    "unclaimed_mmio": {
      "reads": 1,
      "writes": 0
    },
    "pio_ports": [
      {
        "port": 1544,
        "device": "acpi-pm",
        "accesses": 9
      }
    ],
    "pci_config": {
      "accesses": 12,
      "absent": 4,
      "absent_buses": 1,
      "functions": [
        {
          "bdf": "00:00.0",
          "present": true,
          "accesses": 8
        }
      ]
    },
    "uart": {
      "tx_bytes": 42,
      "rx_bytes": 5
    }
  },
  "memory": {
    "peak_rss_kib": 20480,
    "guest_resident_kib": 12288,
    "guest_resident_peak_kib": 12288,
    "overhead_kib": 2304,
    "own_anon_kib": 2048,
    "page_tables_kib": 256
  },
  "hyperv": {
    "msr_reads": 2
  }
}`
	require.Equal(t, want, string(got))
}

func TestReportOptionalFields(t *testing.T) {
	rep := Result{Reason: StopReason{Kind: StopDebugExit, Source: "debug-exit port", Value: 0x21}}.Report("", "")
	data, err := json.Marshal(rep)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	require.NotContains(t, m, "hyperv", "absent when Hyper-V is off")
	require.Nil(t, m["match"])
	require.EqualValues(t, 0x43, m["exit_code"])
	require.EqualValues(t, 0x21, m["stop"].(map[string]any)["debug_exit_value"])
	timing := m["timing"].(map[string]any)
	require.Nil(t, timing["first_console_byte_ms"])
	require.Nil(t, timing["match_ms"])
	require.Equal(t, map[string]any{}, m["exits"])

	rep = Result{Reason: StopReason{Kind: StopError, Detail: "setup", Err: errors.New("boom")}}.Report("", "")
	require.Equal(t, "vmm", rep.ExitSource)
	require.Equal(t, "setup: boom", rep.Stop.Detail)
	require.Equal(t, 1, rep.ExitCode)
}

func TestWriteReportReplaces(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "r.json"))
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteString(string(make([]byte, 10000)))
	require.NoError(t, err)
	require.NoError(t, WriteReport(f, Result{Reason: StopReason{Kind: StopPowerOff, Source: "acpi"}}.Report("", "")))
	data, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	var back Report
	require.NoError(t, json.Unmarshal(data, &back), "no stale bytes after the JSON")
	require.Equal(t, "poweroff", back.Stop.Reason)
}

// TestReportMemory pins how the report computes vmm's own memory: its
// anonymous memory beyond guest RAM plus the page tables at their largest
// sample, beside VmHWM and guest RAM resident (the most at once: the end's
// figure unless the balloon gave memory back).
func TestReportMemory(t *testing.T) {
	for _, c := range []struct {
		name                   string
		peak, guest, guestPeak uint64
		own                    OwnMemory
		want                   ReportMemory
	}{
		{"no balloon", 150 << 20, 123 << 20, 0, OwnMemory{2 << 20, 512 << 10}, ReportMemory{153600, 125952, 125952, 2560, 2048, 512}},
		{"balloon gave 128 MiB back", 260 << 20, 100 << 20, 256 << 20, OwnMemory{3 << 20, 1 << 20}, ReportMemory{266240, 102400, 262144, 4096, 3072, 1024}},
		// A nested-host run (docs/report.md): 1 vCPU, virtio disk and NIC.
		{"nested host, 1 vCPU", 135580 << 10, 133120 << 10, 0, OwnMemory{2400 << 10, 600 << 10}, ReportMemory{135580, 133120, 133120, 3000, 2400, 600}},
		{"bytes below a KiB round down", 135580<<10 + 1023, 133120 << 10, 0, OwnMemory{2400<<10 + 1023, 600 << 10}, ReportMemory{135580, 133120, 133120, 3000, 2400, 600}},
		{"unknown", 0, 0, 0, OwnMemory{}, ReportMemory{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Result{PeakRSS: c.peak, GuestResident: c.guest, GuestResidentPeak: c.guestPeak, Own: c.own}
			require.Equal(t, c.want, r.Report("", "").Memory)
		})
	}
}

// TestReportBalloon: the balloon's figures appear under devices.balloon.
func TestReportBalloon(t *testing.T) {
	r := Result{Balloon: &balloon.Stats{ActualPages: 3, InflatedPages: 5, DeflatedPages: 2, IgnoredPages: 1,
		Reports: 4, ReportedBytes: 8 << 20, Guest: map[string]uint64{"free_memory": 1 << 20}, StatsUpdates: 6}}
	got, err := json.Marshal(r.Report("", "").Devices.Balloon)
	require.NoError(t, err)
	require.JSONEq(t, `{"actual_pages":3,"inflated_pages":5,"deflated_pages":2,"ignored_pages":1,
		"free_page_reports":4,"reported_kib":8192,"guest_stats":{"free_memory":1048576},"stats_updates":6}`, string(got))
	require.Nil(t, Result{}.Report("", "").Devices.Balloon)
}

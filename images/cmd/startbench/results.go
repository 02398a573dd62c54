package main

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// stats are one runner's medians.
type stats struct {
	Runner      string        `json:"runner"`
	Runs        int           `json:"runs"`
	FirstByte   time.Duration `json:"first_byte_ns"`
	Exit        time.Duration `json:"exit_ns,omitempty"`
	PeakRSSKiB  uint64        `json:"peak_rss_kib"`
	FirstExit   time.Duration `json:"first_exit_ns,omitempty"`
	OverheadKiB uint64        `json:"overhead_kib,omitempty"`
	Own         time.Duration `json:"own_ns,omitempty"`
	Samples     []sample      `json:"samples"`
}

type results struct {
	Runners []stats `json:"runners"`
	// Ratios of vmm's medians to the peers' (first byte, peak RSS).
	Ratios map[string]float64 `json:"ratios"`
	// Targets met, by name.
	Targets map[string]bool `json:"targets"`
}

func median[T int64 | uint64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func pick[T any](ss []sample, f func(sample) T) []T {
	out := make([]T, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

func summarize(runners []*runner, samples map[string][]sample) results {
	res := results{Ratios: map[string]float64{}, Targets: map[string]bool{}}
	by := map[string]stats{}
	for _, r := range runners {
		ss := samples[r.name]
		st := stats{
			Runner:      r.name,
			Runs:        len(ss),
			FirstByte:   median(pick(ss, func(s sample) time.Duration { return s.FirstByte })),
			Exit:        median(pick(ss, func(s sample) time.Duration { return s.Exit })),
			PeakRSSKiB:  median(pick(ss, func(s sample) uint64 { return s.PeakRSS })),
			FirstExit:   median(pick(ss, func(s sample) time.Duration { return s.FirstExit })),
			OverheadKiB: median(pick(ss, func(s sample) uint64 { return s.OverheadKiB })),
			Own:         median(pick(ss, func(s sample) time.Duration { return s.Own })),
			Samples:     ss,
		}
		by[r.name] = st
		res.Runners = append(res.Runners, st)
	}
	v, ok := by["vmm"]
	if !ok {
		return res
	}
	for _, peer := range []string{"qemu", "gokvm"} {
		p, ok := by[peer]
		if !ok || p.FirstByte == 0 || p.PeakRSSKiB == 0 {
			continue
		}
		res.Ratios["first_byte_vmm/"+peer] = float64(v.FirstByte) / float64(p.FirstByte)
		res.Ratios["peak_rss_vmm/"+peer] = float64(v.PeakRSSKiB) / float64(p.PeakRSSKiB)
	}
	res.Targets["startup_under_5ms"] = v.FirstExit > 0 && v.FirstExit < targetStartup
	res.Targets["overhead_under_10MiB"] = v.OverheadKiB < targetOverheadMiB<<10
	if q, ok := res.Ratios["first_byte_vmm/qemu"]; ok {
		res.Targets["startup_third_of_qemu"] = q <= targetQEMURatio
	}
	return res
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func (r results) print(w io.Writer) {
	fmt.Fprintf(w, "%-6s %6s %14s %10s %14s %14s %10s %14s\n", "runner", "runs", "first-byte ms", "exit ms", "peak RSS MiB", "first-exit ms", "own ms", "overhead MiB")
	for _, s := range r.Runners {
		exit, fe, own, ov := "-", "-", "-", "-"
		if s.Exit > 0 {
			exit = ms(s.Exit)
		}
		if s.FirstExit > 0 {
			fe = ms(s.FirstExit)
			ov = fmt.Sprintf("%.1f", float64(s.OverheadKiB)/1024)
		}
		if s.Own > 0 {
			own = ms(s.Own)
		}
		fmt.Fprintf(w, "%-6s %6d %14s %10s %14.1f %14s %10s %14s\n", s.Runner, s.Runs, ms(s.FirstByte), exit,
			float64(s.PeakRSSKiB)/1024, fe, own, ov)
	}
	keys := make([]string, 0, len(r.Ratios))
	for k := range r.Ratios {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "ratio %-26s %.3f\n", k, r.Ratios[k])
	}
	names := make([]string, 0, len(r.Targets))
	for k := range r.Targets {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		verdict := "MISSED"
		if r.Targets[k] {
			verdict = "met"
		}
		fmt.Fprintf(w, "target %-24s %s\n", k, verdict)
	}
	fmt.Fprintln(w, "first-byte: exec to the guest's first COM1 byte read from the runner's stdout (noop: a bare Go process printing it);")
	fmt.Fprintln(w, "first-exit: exec to vmm's first guest exit (its report); own: vmm's command start to that exit, without process start;")
	fmt.Fprintln(w, "overhead: vmm's peak RSS minus its resident guest RAM")
}

package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/storage/cloudinit"
)

// The cloud-init benchmark (-cloudinit), issue 16: the Debian image
// (images.DebianDisk, from the read-only image share) boots as a CI job
// boots a distribution's cloud image, in snapshot mode with a NoCloud seed,
// under vmm (--firmware seabios --disk IMG,snapshot --cloud-init DIR) and
// under QEMU -M pc with the same SeaBIOS, the image on virtio-blk with
// snapshot=on and the seed as a read-only virtio-blk ISO. QEMU's ISO is
// built here by the code vmm builds its seed with (storage/cloudinit) from
// the same files, the same instance-id included, so both guests read the
// same seed. Timed from runner start to cloud-init's final message on the
// serial console; the message's own "Up N seconds" (the guest's uptime)
// splits that into the guest's part and what came before its kernel
// (runner start-up, firmware, GRUB).
//
// The outer machine mounts the image share with cache=loose, so the first
// boot reads the image over 9p and every later one from the outer page
// cache: an unmeasured vmm boot (ciWarmupName, an ordinary scenario, which
// runs before the bench ones) warms it, or the first runner would pay for
// both (in the nested host the first vmm run took 289 s to the final
// message, the second 173 s).
func ciScenarioName(runner string) string { return "ci-" + runner }

// ciWarmupName is the unmeasured boot that warms the outer page cache.
const ciWarmupName = "ci-warmup"

const (
	// ciRepeat bounds the runs per runner: one is minutes long.
	ciRepeat = 3
	// ciTimeout bounds one boot: about 2-6 minutes two levels down.
	ciTimeout = 600 * time.Second
	// ciMemoryMiB is the guests' RAM, the e2e Debian scenarios' size.
	ciMemoryMiB = 1024
	// ciSeedDir is vmm's --cloud-init directory in the outer machine,
	// ciSeedISO QEMU's seed volume.
	ciSeedDir = "/tmp/vmm-bench-seed"
	ciSeedISO = "/tmp/vmm-bench-seed.iso"
	// ciInstanceID is the seed's instance-id: named in meta-data, so vmm
	// adds none of its own and both guests see one seed.
	ciInstanceID = "iid-vmm-bench"
	// ciFinalMark is what the outer init times: cloud-init's final message
	// reads "Cloud-init v. VERSION finished at TIME. Datasource ....  Up N
	// seconds" (cc_final_message's default), and nothing else the guest
	// prints before it contains this.
	ciFinalMark = " finished at "
	// ciGoal is issue 16's target for vmm's time over QEMU's.
	ciGoal = 1.0
)

// ciFinalLine matches cloud-init's final message, with the guest's uptime.
var ciFinalLine = regexp.MustCompile(`Cloud-init v\. \S+ finished at .*Up ([0-9]+(?:\.[0-9]+)?) seconds`)

// ciSeedFiles are the seed's files, by name.
func ciSeedFiles() map[string]string {
	return map[string]string{
		"user-data": images.DebianUserData,
		"meta-data": "instance-id: " + ciInstanceID + "\nlocal-hostname: vmm-debian\n",
	}
}

// buildCISeed builds the seed volume as vmm's --cloud-init does.
func buildCISeed() ([]byte, error) {
	tmp, err := os.MkdirTemp("", "bench-seed-")
	if err != nil {
		return nil, fmt.Errorf("cloud-init seed: %w", err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "seed")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cloud-init seed: %w", err)
	}
	for name, data := range ciSeedFiles() {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return nil, fmt.Errorf("cloud-init seed: %w", err)
		}
	}
	// The instance-id argument is unused: meta-data names one.
	f, err := cloudinit.BuildTemp(dir, tmp, ciInstanceID)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.NewSectionReader(f, 0, 1<<40))
}

func (o options) cloudInitScenarios() ([]scenario.Scenario, error) {
	iso, err := buildCISeed()
	if err != nil {
		return nil, err
	}
	var list []scenario.Scenario
	for _, runner := range o.runners {
		s := scenario.Scenario{
			Name: ciScenarioName(runner), Runner: runner, Repeat: min(o.n, ciRepeat), Bench: true,
			Mark: ciFinalMark, Stream: true, Timeout: (ciTimeout + 30*time.Second).String(),
			// vmm's report counts its exits, which say where its time went.
			Report: runner == scenario.RunnerVMM,
		}
		switch runner {
		case scenario.RunnerVMM:
			s.Args = []string{"run", "--firmware", "seabios", "--disk", images.OuterDebianDisk + ",snapshot",
				"--cloud-init", ciSeedDir, "--cpus", strconv.Itoa(o.cpus), "--memory", fmt.Sprintf("%dM", ciMemoryMiB),
				"--console", "stdio", "--timeout", ciTimeout.String()}
			s.Files = map[string]string{}
			for name, data := range ciSeedFiles() {
				s.Files[ciSeedDir+"/"+name] = data
			}
		case scenario.RunnerQEMU:
			s.Args = []string{
				"-M", "pc", "-enable-kvm", "-cpu", "host",
				"-m", strconv.Itoa(ciMemoryMiB), "-smp", strconv.Itoa(o.cpus),
				"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
				"-bios", images.OuterSeaBIOS,
				"-drive", "file=" + images.OuterDebianDisk + ",if=virtio,format=qcow2,snapshot=on",
				"-drive", "file=" + ciSeedISO + ",if=virtio,format=raw,readonly=on",
				"-no-reboot",
			}
			s.Blobs = map[string][]byte{ciSeedISO: iso}
		default:
			return nil, fmt.Errorf("%w: -cloudinit: unknown runner %q", scenario.ErrInvalid, runner)
		}
		list = append(list, s)
		if runner == scenario.RunnerVMM {
			w := s
			w.Name, w.Repeat, w.Bench, w.Stream, w.Report = ciWarmupName, 1, false, false, false
			list = append(list, w)
		}
	}
	return list, nil
}

// ciReport holds the cloud-init boot's medians per runner, over passing runs.
type ciReport struct {
	// FinalS is seconds from runner start to cloud-init's final message.
	FinalS map[string]float64 `json:"final_message_s"`
	// UptimeS is the guest's uptime that message states, over the
	// messages the runner's console carried.
	UptimeS map[string]float64 `json:"guest_uptime_s"`
	N       map[string]int     `json:"n"`
	// Ratio is vmm's FinalS over QEMU's; 0 when either is missing.
	Ratio float64 `json:"ratio_vmm_qemu"`
	Goal  float64 `json:"goal_ratio_max"`
	Met   bool    `json:"goal_met"`
	// VMMExits are the medians of vmm's exits per run by kind (its
	// --report), and VMMConsoleBytes of what its UART sent.
	VMMExits        map[string]float64 `json:"vmm_exits,omitempty"`
	VMMConsoleBytes float64            `json:"vmm_console_bytes,omitempty"`
}

// ciRunReport is the part of vmm's report the summary reads.
type ciRunReport struct {
	Exits   map[string]uint64 `json:"exits"`
	Devices struct {
		UART struct {
			TxBytes uint64 `json:"tx_bytes"`
		} `json:"uart"`
	} `json:"devices"`
}

func summarizeCloudInit(runners []string, results []scenario.Result, console map[string][]string) ciReport {
	rep := ciReport{FinalS: map[string]float64{}, UptimeS: map[string]float64{}, N: map[string]int{}, Goal: ciGoal}
	for _, runner := range runners {
		name := ciScenarioName(runner)
		var final, up []float64
		for _, r := range results {
			if r.Name == name && r.Pass && r.MarkS >= 0 {
				final = append(final, r.MarkS)
			}
		}
		for _, line := range console[name] {
			if m := ciFinalLine.FindStringSubmatch(line); m != nil {
				if v, err := strconv.ParseFloat(m[1], 64); err == nil {
					up = append(up, v)
				}
			}
		}
		if len(final) > 0 {
			rep.FinalS[runner], rep.N[runner] = median(final), len(final)
		}
		if len(up) > 0 {
			rep.UptimeS[runner] = median(up)
		}
	}
	v, okV := rep.FinalS[scenario.RunnerVMM]
	q, okQ := rep.FinalS[scenario.RunnerQEMU]
	if okV && okQ && q > 0 {
		rep.Ratio = v / q
		rep.Met = rep.Ratio <= ciGoal
	}
	reps, _ := scenario.ParseReports[ciRunReport](console[ciScenarioName(scenario.RunnerVMM)])
	exits := map[string][]float64{}
	var tx []float64
	for _, r := range reps {
		for k, n := range r.Exits {
			exits[k] = append(exits[k], float64(n))
		}
		tx = append(tx, float64(r.Devices.UART.TxBytes))
	}
	if len(reps) > 0 {
		rep.VMMExits = map[string]float64{}
		for k, xs := range exits {
			rep.VMMExits[k] = median(xs)
		}
		rep.VMMConsoleBytes = median(tx)
	}
	return rep
}

func (rep ciReport) write(w io.Writer) {
	var b strings.Builder
	b.WriteString("cloud-init boot (Debian 12 qcow2 in snapshot mode, SeaBIOS -> GRUB -> systemd, same NoCloud seed), medians:\n")
	for _, runner := range []string{scenario.RunnerVMM, scenario.RunnerQEMU} {
		n, ok := rep.N[runner]
		if !ok {
			fmt.Fprintf(&b, "  %-5s n/a (no passing run)\n", runner)
			continue
		}
		fmt.Fprintf(&b, "  %-5s n=%d  to cloud-init's final message %.1fs", runner, n, rep.FinalS[runner])
		if up, ok := rep.UptimeS[runner]; ok {
			fmt.Fprintf(&b, "  (guest uptime then %.1fs, before the guest's kernel %.1fs)", up, rep.FinalS[runner]-up)
		}
		b.WriteString("\n")
	}
	if len(rep.VMMExits) > 0 {
		kinds := make([]string, 0, len(rep.VMMExits))
		for k := range rep.VMMExits {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		b.WriteString("  vmm exits per run:")
		for _, k := range kinds {
			fmt.Fprintf(&b, " %s %.0f", k, rep.VMMExits[k])
		}
		fmt.Fprintf(&b, "; console %.0f bytes\n", rep.VMMConsoleBytes)
	}
	if rep.Ratio > 0 {
		fmt.Fprintf(&b, "  ratio vmm/qemu %.2f (goal <= %.1f: %t)\n", rep.Ratio, rep.Goal, rep.Met)
	} else {
		b.WriteString("  ratio vmm/qemu: n/a (a runner has no passing run)\n")
	}
	_, _ = io.WriteString(w, b.String())
}

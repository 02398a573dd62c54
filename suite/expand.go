package suite

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/vmmdev/vmm/vmm/hyperv"
)

const (
	flagHyperV  = "hyperv"
	flagConsole = "console"
	flagTimeout = "timeout"
	// ablatePrefix marks a hyperv axis value that expands to one case per
	// switch turned off.
	ablatePrefix = "ablate:"
)

// ablate expands "ablate:LIST": LIST itself (the baseline), then LIST with
// each of its switches off in turn, along with the switches that need it.
func ablate(list string) ([]axisValue, error) {
	f, err := hyperv.ParseFeatures(list)
	if err != nil {
		return nil, err
	}
	on := f.Switches()
	if len(on) == 0 {
		return nil, fmt.Errorf("%s%s turns no switch on: nothing to ablate", ablatePrefix, list)
	}
	base := f.String()
	out := []axisValue{{label: list, values: []string{base}, ablation: &Ablation{Base: list}}}
	for _, s := range on {
		var also []string
		for _, d := range hyperv.Dependents(s) {
			if slices.Contains(on, d) {
				also = append(also, d)
			}
		}
		v := base
		for _, o := range append([]string{s}, also...) {
			v += "," + o + "=off"
		}
		out = append(out, axisValue{
			label:    list + "," + s + "=off",
			values:   []string{v},
			ablation: &Ablation{Base: list, Off: s, AlsoOff: also},
		})
	}
	return out, nil
}

// mergedAxes are the suite's axes overlaid by a guest's: a guest's axis
// replaces the suite's of the same name, an empty one removes it.
func mergedAxes(suite, own []axis) []axis {
	var out []axis
	for _, a := range suite {
		if i := slices.IndexFunc(own, func(o axis) bool { return o.name == a.name }); i >= 0 {
			a = own[i]
		}
		if len(a.values) > 0 {
			out = append(out, a)
		}
	}
	for _, o := range own {
		if !slices.ContainsFunc(suite, func(a axis) bool { return a.name == o.name }) && len(o.values) > 0 {
			out = append(out, o)
		}
	}
	return out
}

// product lists every combination of one value per axis, the last axis
// varying fastest.
func product(axes []axis) [][]axisValue {
	out := [][]axisValue{nil}
	for _, a := range axes {
		var next [][]axisValue
		for _, prefix := range out {
			for _, v := range a.values {
				next = append(next, append(slices.Clip(prefix), v))
			}
		}
		out = next
	}
	return out
}

// settings are one case's flags and exit code as the layers set them.
type settings struct {
	flags  map[string]entry
	exit   int
	exitAt origin
	guest  origin
}

func (s *settings) apply(l layer) {
	for k, e := range l.flags {
		s.flags[k] = e
	}
	if l.exit != nil {
		s.exit, s.exitAt = *l.exit, l.exitAt
	}
}

// checkDir is the case directory the Checker sees: never created.
func checkDir() string { return filepath.Join(os.TempDir(), "vmm-test-check", "case") }

func (l *loader) expand(d decoded, check Checker) ([]Case, error) {
	var cases []Case
	names := map[string]origin{}
	used := make([]bool, len(d.matches))
	for _, g := range d.guests {
		axes := mergedAxes(d.axes, g.axes)
		for _, combo := range product(axes) {
			c := Case{Guest: g.name}
			st := settings{flags: map[string]entry{}, guest: g.at, exitAt: g.at}
			st.apply(d.defaults)
			st.apply(g.set)
			nameParts := []string{g.name}
			for i, v := range combo {
				a := axes[i]
				c.Axes = append(c.Axes, AxisValue{Axis: a.name, Label: v.label})
				nameParts = append(nameParts, a.name+"="+v.label)
				st.flags[a.name] = entry{values: v.values, at: v.at}
				if v.ablation != nil {
					c.Ablation = v.ablation
				}
			}
			c.Name = strings.Join(nameParts, "/")
			if prev, dup := names[c.Name]; dup {
				return nil, l.errf(prev, "two cases named %q", c.Name)
			}
			names[c.Name] = g.at
			for i, m := range d.matches {
				ok, err := path.Match(m.glob, c.Name)
				if err != nil {
					return nil, l.errf(m.at, "bad pattern: %v", err)
				}
				if ok {
					used[i] = true
					st.apply(m.set)
				}
			}
			if err := l.finish(&c, st, check); err != nil {
				return nil, err
			}
			cases = append(cases, c)
		}
	}
	for i, m := range d.matches {
		if !used[i] {
			return nil, l.errf(m.at, "matches no case (case names look like %q)", cases[0].Name)
		}
	}
	return cases, nil
}

// flagRef finds the flags an error line of `vmm run` names: its own
// messages say --memory, the flag package's "flag -memory".
var flagRef = regexp.MustCompile(`(?:--|flag -)([a-z][a-z0-9-]*)`)

// finish builds the case's command line from its settings and checks it.
func (l *loader) finish(c *Case, st settings, check Checker) error {
	c.Exit = st.exit
	if _, ok := st.flags[flagConsole]; !ok {
		// The console log has everything; stdio would only duplicate it.
		st.flags[flagConsole] = entry{values: []string{"none"}}
	}
	if _, ok := st.flags[flagTimeout]; !ok {
		st.flags[flagTimeout] = entry{values: []string{DefaultTimeout.String()}}
	}
	keys := make([]string, 0, len(st.flags))
	for k := range st.flags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range st.flags[k].values {
			c.Args = append(c.Args, "--"+k+"="+v)
		}
	}
	if e, ok := st.flags[flagTimeout]; ok && len(e.values) == 1 {
		t, err := time.ParseDuration(e.values[0])
		if err != nil || t < 0 {
			return l.errf(e.at, "%q is not a duration (examples: 90s, 5m)", e.values[0])
		}
		c.Timeout = t
	}
	if e, ok := st.flags[flagHyperV]; ok && len(e.values) == 1 {
		f, err := hyperv.ParseFeatures(e.values[0])
		if err != nil {
			return l.errAt(e.at, err)
		}
		c.HyperV = f.Enabled()
	}
	if check == nil {
		return nil
	}
	if err := check(c.RunArgs(checkDir())); err != nil {
		at := st.guest
		for _, m := range flagRef.FindAllStringSubmatch(err.Error(), -1) {
			if e, ok := st.flags[m[1]]; ok && e.at.ok {
				at = e.at
				break
			}
		}
		return l.errAt(at, fmt.Errorf("case %s: %w", c.Name, err))
	}
	return nil
}

// Files of a case's directory.
const (
	ConsoleLog  = "console.log"
	ReportFile  = "report.json"
	HyperVTrace = "hyperv-trace.jsonl"
)

// RunArgs is the case's full `vmm run` command line, with its outputs in dir.
func (c Case) RunArgs(dir string) []string {
	args := append([]string{"run"}, c.Args...)
	args = append(args, "--"+FlagConsoleLog+"="+filepath.Join(dir, ConsoleLog), "--"+FlagReport+"="+filepath.Join(dir, ReportFile))
	if c.HyperV {
		args = append(args, "--"+FlagHyperVTrace+"="+filepath.Join(dir, HyperVTrace))
	}
	return args
}

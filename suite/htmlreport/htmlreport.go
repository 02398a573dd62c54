// Package htmlreport writes `vmm test` results as one self-contained HTML
// page: inline CSS, an inline SVG chart of each case's time to its expected
// line, the table of cases and, for Hyper-V ablation cases, a table per
// ablation of what turning each switch off changed. It loads nothing.
package htmlreport

import (
	"fmt"
	"html/template"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vmmdev/vmm/suite/result"
)

// Bar is one case in the chart.
type Bar struct {
	Name, Verdict, Label string
	Y, Width, TextX      int
}

// Row is one case in the table of cases.
type Row struct {
	result.Case
	Exit, Time, Axes string
}

// AblationRow is one case of an ablation: the switch it turned off.
type AblationRow struct {
	Off, AlsoOff, Clocksource, Clockevent, MSRs, Hypercalls, Boot, Verdict string
	Changes                                                                []string
	Name                                                                   string
}

// Ablation is one ablation table: a guest and the other axes' values.
type Ablation struct {
	Title string
	Rows  []AblationRow
}

// page is the template's data.
type page struct {
	Run                                           result.Run
	Title, Started, Wall, Shards                  string
	Passed, Failed, Errors, Skipped, Interrupted  int
	Rows                                          []Row
	Bars                                          []Bar
	ChartHeight, ChartWidth, LabelWidth, BarSpace int
	Scale                                         string
	Ablations                                     []Ablation
}

const (
	barHeight  = 18
	barGap     = 6
	labelWidth = 420
	barSpace   = 480
)

// ms formats milliseconds for people.
func ms(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f s", v/1000)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// TimeToExpected is the time to the case's expected line: the --expect
// match if there was one, else the guest's whole run.
func TimeToExpected(c result.Case) float64 {
	if c.MatchMS != nil {
		return *c.MatchMS
	}
	return c.GuestMS
}

func build(r result.Run) page {
	p := page{Run: r, Title: "vmm test: " + r.Suite, Wall: ms(r.WallMS), Shards: strings.Join(r.Shards, ", "),
		LabelWidth: labelWidth, BarSpace: barSpace, ChartWidth: labelWidth + barSpace + 90}
	if r.StartedUnixNS != 0 {
		p.Started = time.Unix(0, r.StartedUnixNS).UTC().Format(time.RFC3339)
	}
	counts := r.Counts()
	p.Passed, p.Failed, p.Errors = counts[result.Pass], counts[result.Fail], counts[result.Error]
	p.Skipped, p.Interrupted = counts[result.Skipped], counts[result.Interrupted]
	var longest float64
	for _, c := range r.Cases {
		longest = max(longest, TimeToExpected(c))
	}
	for i, c := range r.Cases {
		row := Row{Case: c, Exit: "-", Time: ms(TimeToExpected(c))}
		if c.Exit != nil {
			row.Exit = fmt.Sprint(*c.Exit)
		}
		var axes []string
		for _, a := range c.Axes {
			axes = append(axes, a.Axis+"="+a.Label)
		}
		row.Axes = strings.Join(axes, " ")
		p.Rows = append(p.Rows, row)
		w := 0
		if longest > 0 {
			w = int(TimeToExpected(c) / longest * barSpace)
		}
		p.Bars = append(p.Bars, Bar{Name: c.Name, Verdict: string(c.Verdict), Label: ms(TimeToExpected(c)),
			Y: i * (barHeight + barGap), Width: max(w, 1), TextX: labelWidth + max(w, 1) + 6})
	}
	p.ChartHeight = len(r.Cases)*(barHeight+barGap) + 4
	p.Scale = ms(longest)
	p.Ablations = ablations(r.Cases)
	return p
}

// ablations groups the ablation cases by guest and the other axes' values,
// baseline first, and says what each switch changed against the baseline.
func ablations(cases []result.Case) []Ablation {
	var out []Ablation
	index := map[string]int{}
	var baselines []*result.Case
	for i := range cases {
		c := &cases[i]
		if c.Ablation == nil {
			continue
		}
		key := c.Guest
		for _, a := range c.Axes {
			if a.Axis != "hyperv" {
				key += " " + a.Axis + "=" + a.Label
			}
		}
		g, ok := index[key]
		if !ok {
			g = len(out)
			index[key] = g
			out = append(out, Ablation{Title: key + ": hyperv " + c.Ablation.Base + ", one switch off at a time"})
			baselines = append(baselines, nil)
		}
		if c.Ablation.Off == "" {
			baselines[g] = c
		}
	}
	for i := range cases {
		c := &cases[i]
		if c.Ablation == nil {
			continue
		}
		key := c.Guest
		for _, a := range c.Axes {
			if a.Axis != "hyperv" {
				key += " " + a.Axis + "=" + a.Label
			}
		}
		g := index[key]
		row := AblationRow{Name: c.Name, Off: c.Ablation.Off, AlsoOff: strings.Join(c.Ablation.AlsoOff, ", "),
			Clocksource: dash(c.Clocksource), Clockevent: dash(c.Clockevent), Boot: ms(TimeToExpected(*c)),
			Verdict: string(c.Verdict), MSRs: "-", Hypercalls: "-"}
		if row.Off == "" {
			row.Off = "(none: baseline)"
		}
		if c.HyperV != nil {
			row.MSRs = dash(strings.Join(c.HyperV.MSRs, ", "))
			row.Hypercalls = dash(strings.Join(c.HyperV.Hypercalls, ", "))
		}
		if b := baselines[g]; b != nil && b != c {
			row.Changes = changes(*b, *c)
		}
		if c.Ablation.Off == "" {
			out[g].Rows = slices.Insert(out[g].Rows, 0, row)
		} else {
			out[g].Rows = append(out[g].Rows, row)
		}
	}
	return out
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// changes lists what differs in c from the baseline b.
func changes(b, c result.Case) []string {
	var out []string
	if b.Clocksource != c.Clocksource {
		out = append(out, fmt.Sprintf("clocksource %s → %s", dash(b.Clocksource), dash(c.Clocksource)))
	}
	if b.Clockevent != c.Clockevent {
		out = append(out, fmt.Sprintf("clockevent %s → %s", dash(b.Clockevent), dash(c.Clockevent)))
	}
	var bm, cm, bh, ch []string
	if b.HyperV != nil {
		bm, bh = b.HyperV.MSRs, b.HyperV.Hypercalls
	}
	if c.HyperV != nil {
		cm, ch = c.HyperV.MSRs, c.HyperV.Hypercalls
	}
	out = append(out, setDiff("MSR", bm, cm)...)
	out = append(out, setDiff("hypercall", bh, ch)...)
	if b.Verdict != c.Verdict {
		out = append(out, fmt.Sprintf("verdict %s → %s", b.Verdict, c.Verdict))
	}
	if len(out) == 0 {
		out = []string{"nothing seen"}
	}
	return out
}

func setDiff(what string, before, after []string) []string {
	var out []string
	for _, x := range before {
		if !slices.Contains(after, x) {
			out = append(out, fmt.Sprintf("no %s %s", what, x))
		}
	}
	for _, x := range after {
		if !slices.Contains(before, x) {
			out = append(out, fmt.Sprintf("new %s %s", what, x))
		}
	}
	return out
}

var tmpl = template.Must(template.New("page").Parse(pageTemplate))

// Write writes r's page to w.
func Write(w io.Writer, r result.Run) error {
	if err := tmpl.Execute(w, build(r)); err != nil {
		return fmt.Errorf("write html: %w", err)
	}
	return nil
}

// WriteFile writes r's page to path.
func WriteFile(path string, r result.Run) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write html: %w", err)
	}
	if err := Write(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Bar fills of the chart, by verdict (tests look for them in screenshots).
const (
	PassFill = "#3a9d55"
	FailFill = "#d0413e"
)

const pageTemplate = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
h2 { font-size: 1.15em; margin: 1.5em 0 .5em; }
.summary span { margin-right: 1.2em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #176f2c; } .fail, .error { color: #b00020; } .skipped, .interrupted { color: #8a6d00; }
tr.fail td, tr.error td { background: #fff1f1; }
pre { background: #f7f7f7; padding: .5em; max-height: 20em; overflow: auto; font-size: 12px; margin: .3em 0; }
svg text { font: 12px system-ui, sans-serif; }
rect.pass { fill: ` + PassFill + `; } rect.fail, rect.error { fill: ` + FailFill + `; } rect.skipped, rect.interrupted { fill: #c9a227; }
ul.changes { margin: 0; padding-left: 1.2em; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p class="summary" id="summary">
<span>{{len .Run.Cases}} of {{.Run.SuiteCases}} cases</span>
<span class="pass">passed {{.Passed}}</span>
<span class="fail">failed {{.Failed}}</span>
<span class="error">errors {{.Errors}}</span>
{{if .Skipped}}<span class="skipped">skipped {{.Skipped}}</span>{{end}}
{{if .Interrupted}}<span class="interrupted">interrupted {{.Interrupted}}</span>{{end}}
<span>wall {{.Wall}}</span>
<span>shards {{.Shards}}</span>
{{if .Started}}<span>started {{.Started}}</span>{{end}}
</p>

<h2>Time to the expected line</h2>
<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{{.ChartWidth}}" height="{{.ChartHeight}}" role="img" aria-label="time to the expected line per case (longest {{.Scale}})">
{{range .Bars}}<g class="bar"><text x="{{$.LabelWidth}}" dx="-6" y="{{.Y}}" dy="14" text-anchor="end">{{.Name}}</text><rect class="{{.Verdict}}" x="{{$.LabelWidth}}" y="{{.Y}}" width="{{.Width}}" height="18"><title>{{.Name}}: {{.Label}} ({{.Verdict}})</title></rect><text x="{{.TextX}}" y="{{.Y}}" dy="14">{{.Label}}</text></g>
{{end}}</svg>

<h2>Cases</h2>
<table id="cases">
<thead><tr><th>case</th><th>verdict</th><th>exit (expected)</th><th>stop</th><th>to expected line</th><th>wall</th><th>clocksource</th><th>detail</th></tr></thead>
<tbody>
{{range .Rows}}<tr class="{{.Verdict}}" data-case="{{.Name}}"><td>{{.Name}}</td><td class="{{.Verdict}}">{{.Verdict}}</td><td class="num">{{.Exit}} ({{.ExpectedExit}})</td><td>{{.StopReason}}</td><td class="num">{{.Time}}</td><td class="num">{{printf "%.0f ms" .WallMS}}</td><td>{{.Clocksource}}</td><td>{{.Detail}}{{if .ConsoleTail}}<pre>{{.ConsoleTail}}</pre>{{end}}</td></tr>
{{end}}</tbody>
</table>

{{range $i, $a := .Ablations}}
<h2>{{$a.Title}}</h2>
<table class="ablation" id="ablation-{{$i}}">
<thead><tr><th>switch off</th><th>also off</th><th>clocksource</th><th>clockevent</th><th>MSRs used</th><th>hypercalls used</th><th>boot (to expected line)</th><th>verdict</th><th>changes against the baseline</th></tr></thead>
<tbody>
{{range $a.Rows}}<tr class="{{.Verdict}}" data-case="{{.Name}}"><td>{{.Off}}</td><td>{{.AlsoOff}}</td><td>{{.Clocksource}}</td><td>{{.Clockevent}}</td><td>{{.MSRs}}</td><td>{{.Hypercalls}}</td><td class="num">{{.Boot}}</td><td class="{{.Verdict}}">{{.Verdict}}</td><td>{{if .Changes}}<ul class="changes">{{range .Changes}}<li>{{.}}</li>{{end}}</ul>{{end}}</td></tr>
{{end}}</tbody>
</table>
{{end}}
</body>
</html>
`

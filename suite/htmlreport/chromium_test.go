package htmlreport

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/vmmdev/vmm/internal/chromiumtest"
	"github.com/vmmdev/vmm/suite/result"
)

// TestChromiumRendersPage opens the page of a results file in headless
// Chromium (Debian's chromium package): the DOM Chromium built has the
// table of cases and the ablation table, row by row, and a screenshot of
// it is a PNG that is not blank.
func TestChromiumRendersPage(t *testing.T) {
	bin := chromiumtest.Binary(t)
	dir := t.TempDir()
	// From a results file, as `vmm test merge --html` does.
	require.NoError(t, result.WriteJSON(filepath.Join(dir, "results.json"), ablationRun()))
	run, err := result.ReadJSON(filepath.Join(dir, "results.json"))
	require.NoError(t, err)
	page := filepath.Join(dir, "report.html")
	require.NoError(t, WriteFile(page, run))

	// Chromium starts slowly on a busy host; a minute is plenty.
	p := chromiumtest.Open(t, bin, page, 1280, 900, time.Minute)
	doc := p.DOM
	tables := chromiumtest.Find(doc, chromiumtest.ByID("cases"))
	require.Len(t, tables, 1, "the table of cases")
	names, rows := chromiumtest.BodyRows(tables[0])
	require.Equal(t, []string{"a/hyperv=all", "a/hyperv=all,time=off", "a/hyperv=all,relaxed=off", "plain"}, names)
	require.Equal(t, []string{"a/hyperv=all", "pass", "- (0)", "", "2.00 s", "0 ms", "hyperv_clocksource_tsc_page", ""}, rows[0])
	require.Equal(t, "fail", rows[2][1])
	require.Equal(t, "exit 4, expected 0 (timeout)<script>alert(1)</script>", rows[2][7], "the console tail is text, not markup")
	require.Empty(t, chromiumtest.Find(doc, chromiumtest.Elem("script")), "no script, not even the console's")

	tables = chromiumtest.Find(doc, chromiumtest.ByID("ablation-0"))
	require.Len(t, tables, 1, "the ablation table")
	names, rows = chromiumtest.BodyRows(tables[0])
	require.Equal(t, []string{"a/hyperv=all", "a/hyperv=all,time=off", "a/hyperv=all,relaxed=off"}, names, "the baseline first")
	require.Equal(t, []string{"(none: baseline)", "", "hyperv_clocksource_tsc_page", "Hyper-V clockevent",
		"HV_X64_MSR_REFERENCE_TSC, HV_X64_MSR_STIMER0_CONFIG", "HvFlushVirtualAddressSpace", "2.00 s", "pass", ""}, rows[0])
	require.Equal(t, []string{"time", "stimer, stimer-direct", "tsc", "lapic", "-", "HvFlushVirtualAddressSpace", "2.50 s", "pass"}, rows[1][:8])
	var changes []string
	for _, li := range chromiumtest.Find(tables[0], chromiumtest.Elem("li")) {
		changes = append(changes, chromiumtest.Text(li))
	}
	require.Contains(t, changes, "clocksource hyperv_clocksource_tsc_page → tsc")
	require.Contains(t, changes, "no MSR HV_X64_MSR_STIMER0_CONFIG")
	require.Contains(t, changes, "verdict pass → fail")
	require.Len(t, chromiumtest.Find(doc, func(n *html.Node) bool {
		return chromiumtest.Elem("g")(n) && chromiumtest.Attr(n, "class") == "bar"
	}), 4, "a bar per case in the chart")

	// Rendered text and bars, not a blank page: white, some dark text and
	// the green of a passed case's bar.
	seen := chromiumtest.Colours(p.Shot)
	require.Greater(t, len(seen), 10, "colours in the screenshot")
	require.Positive(t, seen[chromiumtest.RGB(t, PassFill)], "the green bar of a passed case")
}

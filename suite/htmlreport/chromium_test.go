package htmlreport

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/vmmdev/vmm/internal/testenv"
	"github.com/vmmdev/vmm/suite/result"
)

// chromium runs Debian's headless Chromium on page with args, in a profile
// of its own and with nothing that reaches the network, and returns stdout.
func chromium(t *testing.T, bin, page string, args ...string) []byte {
	t.Helper()
	// Chromium starts slowly on a busy host; a minute is plenty.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-extensions", "--no-first-run",
		"--no-default-browser-check", "--user-data-dir=" + t.TempDir()}, args...)
	cmd := exec.CommandContext(ctx, bin, append(full, "file://"+page)...)
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "chromium %v: stderr:\n%s", args, stderr.String())
	return stdout.Bytes()
}

// find returns the elements under n (n included) for which match is true.
func find(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for c := range n.Descendants() {
		if match(c) {
			out = append(out, c)
		}
	}
	return out
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func elem(tag string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Type == html.ElementNode && n.Data == tag }
}

func byID(id string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Type == html.ElementNode && attr(n, "id") == id }
}

func text(n *html.Node) string {
	var b strings.Builder
	for c := range n.Descendants() {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	}
	return strings.TrimSpace(b.String())
}

// bodyRows are a table's rows as the text of their cells, with the
// data-case of each row.
func bodyRows(table *html.Node) (cases []string, cells [][]string) {
	for _, tbody := range find(table, elem("tbody")) {
		for _, tr := range find(tbody, elem("tr")) {
			cases = append(cases, attr(tr, "data-case"))
			var row []string
			for _, td := range find(tr, elem("td")) {
				row = append(row, text(td))
			}
			cells = append(cells, row)
		}
	}
	return cases, cells
}

// TestChromiumRendersPage opens the page of a results file in headless
// Chromium (Debian's chromium package): the DOM Chromium built has the
// table of cases and the ablation table, row by row, and a screenshot of
// it is a PNG that is not blank.
func TestChromiumRendersPage(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Skip(t, "Debian's chromium package is not installed (make setup installs it): %v", err)
	}
	dir := t.TempDir()
	// From a results file, as `vmm test merge --html` does.
	require.NoError(t, result.WriteJSON(filepath.Join(dir, "results.json"), ablationRun()))
	run, err := result.ReadJSON(filepath.Join(dir, "results.json"))
	require.NoError(t, err)
	page := filepath.Join(dir, "report.html")
	require.NoError(t, WriteFile(page, run))

	doc, err := html.Parse(bytes.NewReader(chromium(t, bin, page, "--dump-dom")))
	require.NoError(t, err)
	tables := find(doc, byID("cases"))
	require.Len(t, tables, 1, "the table of cases")
	names, rows := bodyRows(tables[0])
	require.Equal(t, []string{"a/hyperv=all", "a/hyperv=all,time=off", "a/hyperv=all,relaxed=off", "plain"}, names)
	require.Equal(t, []string{"a/hyperv=all", "pass", "- (0)", "", "2.00 s", "0 ms", "hyperv_clocksource_tsc_page", ""}, rows[0])
	require.Equal(t, "fail", rows[2][1])
	require.Equal(t, "exit 4, expected 0 (timeout)<script>alert(1)</script>", rows[2][7], "the console tail is text, not markup")
	require.Empty(t, find(doc, elem("script")), "no script, not even the console's")

	tables = find(doc, byID("ablation-0"))
	require.Len(t, tables, 1, "the ablation table")
	names, rows = bodyRows(tables[0])
	require.Equal(t, []string{"a/hyperv=all", "a/hyperv=all,time=off", "a/hyperv=all,relaxed=off"}, names, "the baseline first")
	require.Equal(t, []string{"(none: baseline)", "", "hyperv_clocksource_tsc_page", "Hyper-V clockevent",
		"HV_X64_MSR_REFERENCE_TSC, HV_X64_MSR_STIMER0_CONFIG", "HvFlushVirtualAddressSpace", "2.00 s", "pass", ""}, rows[0])
	require.Equal(t, []string{"time", "stimer, stimer-direct", "tsc", "lapic", "-", "HvFlushVirtualAddressSpace", "2.50 s", "pass"}, rows[1][:8])
	var changes []string
	for _, li := range find(tables[0], elem("li")) {
		changes = append(changes, text(li))
	}
	require.Contains(t, changes, "clocksource hyperv_clocksource_tsc_page → tsc")
	require.Contains(t, changes, "no MSR HV_X64_MSR_STIMER0_CONFIG")
	require.Contains(t, changes, "verdict pass → fail")
	require.Len(t, find(doc, func(n *html.Node) bool { return elem("g")(n) && attr(n, "class") == "bar" }), 4, "a bar per case in the chart")

	shot := filepath.Join(dir, "report.png")
	chromium(t, bin, page, "--screenshot="+shot, "--window-size=1280,900", "--hide-scrollbars")
	f, err := os.Open(shot)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	require.Equal(t, image.Rect(0, 0, 1280, 900), img.Bounds())
	// Rendered text and bars, not a blank page: white, some dark text and
	// the green of a passed case's bar.
	seen := map[color.RGBA]int{}
	for y := 0; y < 900; y += 2 {
		for x := 0; x < 1280; x += 2 {
			seen[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)]++
		}
	}
	require.Greater(t, len(seen), 10, "colours in the screenshot")
	require.Positive(t, seen[color.RGBA{0x3a, 0x9d, 0x55, 0xff}], "the green bar of a passed case")
}

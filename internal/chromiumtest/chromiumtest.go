// Package chromiumtest opens a page in Debian's headless Chromium for tests:
// the DOM Chromium built and a screenshot in one run, and helpers to read
// tables out of that DOM (x/net/html).
package chromiumtest

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/vmmdev/vmm/internal/testenv"
)

// Binary is Debian's chromium, or skips t (fails it under CI=true).
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Skip(t, "Debian's chromium package is not installed (make setup installs it): %v", err)
	}
	return bin
}

// Page is what Chromium made of a page.
type Page struct {
	DOM  *html.Node
	Shot image.Image
}

// Open renders the file page in headless Chromium at width x height, in a
// profile of its own and with nothing that reaches the network, and returns
// its DOM (--dump-dom) and screenshot (--screenshot), both from one start:
// a start costs a second here and tens of seconds in the nested test host.
// timeout bounds the run.
func Open(t testing.TB, bin, page string, width, height int, timeout time.Duration) Page {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	dir := t.TempDir()
	shot := filepath.Join(dir, "screenshot.png")
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-extensions", "--no-first-run",
		"--no-default-browser-check", "--user-data-dir=" + filepath.Join(dir, "profile"),
		"--dump-dom", "--screenshot=" + shot, "--hide-scrollbars",
		"--window-size=" + strconv.Itoa(width) + "," + strconv.Itoa(height), "file://" + page}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	// Chromium writes its crash database and caches under HOME.
	cmd.Env = append(os.Environ(), "HOME="+dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "chromium: stderr:\n%s", stderr.String())
	doc, err := html.Parse(&stdout)
	require.NoError(t, err)
	f, err := os.Open(shot)
	require.NoError(t, err, "the screenshot; chromium's stderr:\n%s", stderr.String())
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	require.Equal(t, image.Rect(0, 0, width, height), img.Bounds())
	return Page{DOM: doc, Shot: img}
}

// Colours counts the colours of every other pixel of img.
func Colours(img image.Image) map[color.RGBA]int {
	seen := map[color.RGBA]int{}
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y += 2 {
		for x := r.Min.X; x < r.Max.X; x += 2 {
			seen[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)]++
		}
	}
	return seen
}

// Find returns the elements under n (n included) for which match is true.
func Find(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for c := range n.Descendants() {
		if match(c) {
			out = append(out, c)
		}
	}
	return out
}

// Attr is n's attribute key, or "".
func Attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// Elem matches elements named tag.
func Elem(tag string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Type == html.ElementNode && n.Data == tag }
}

// ByID matches the element with id.
func ByID(id string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Type == html.ElementNode && Attr(n, "id") == id }
}

// Text is the text under n, trimmed.
func Text(n *html.Node) string {
	var b strings.Builder
	for c := range n.Descendants() {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	}
	return strings.TrimSpace(b.String())
}

// BodyRows are a table's body rows as the text of their cells, with the
// data-case attribute of each row.
func BodyRows(table *html.Node) (cases []string, cells [][]string) {
	for _, tbody := range Find(table, Elem("tbody")) {
		for _, tr := range Find(tbody, Elem("tr")) {
			cases = append(cases, Attr(tr, "data-case"))
			var row []string
			for _, td := range Find(tr, Elem("td")) {
				row = append(row, Text(td))
			}
			cells = append(cells, row)
		}
	}
	return cases, cells
}

// RGB is the colour of a CSS hex colour #rrggbb, opaque.
func RGB(t testing.TB, hex string) color.RGBA {
	t.Helper()
	var r, g, b uint8
	_, err := fmt.Sscanf(hex, "#%02x%02x%02x", &r, &g, &b)
	require.NoError(t, err, "colour %q", hex)
	return color.RGBA{r, g, b, 0xff}
}

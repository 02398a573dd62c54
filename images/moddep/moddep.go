// Package moddep reads and writes depmod's modules.dep format and orders
// kernel modules so that every module is loaded after its dependencies.
//
// It is pure Go with no I/O of its own, so the host-side image builder and the
// in-guest loaders (outer init, guest agent) share one parser.
package moddep

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// ErrUnknownModule is returned when a requested module is not in the map.
var ErrUnknownModule = errors.New("module not in modules.dep")

// ErrCycle is returned when dependencies form a cycle (a corrupt modules.dep).
var ErrCycle = errors.New("dependency cycle in modules.dep")

// ErrSyntax is returned for a line that is not "path: dep dep...".
var ErrSyntax = errors.New("malformed modules.dep line")

// maxLine bounds one modules.dep line; real lines are a few hundred bytes.
const maxLine = 64 << 10

// Deps maps a module's path (relative to /lib/modules/<version>) to the paths
// of the modules it depends on directly.
type Deps map[string][]string

// Name returns the canonical module name of a path or name: the base name
// without ".ko" (and any compression suffix) with '-' folded to '_', which
// is how the kernel itself compares module names.
func Name(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// Parse reads modules.dep. Blank lines and '#' comments are skipped.
func Parse(r io.Reader) (Deps, error) {
	d := Deps{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		mod, rest, ok := strings.Cut(line, ":")
		mod = strings.TrimSpace(mod)
		if !ok || mod == "" || strings.ContainsAny(mod, " \t") {
			return nil, fmt.Errorf("line %d %q: %w", n, truncate(line), ErrSyntax)
		}
		if _, dup := d[mod]; dup {
			return nil, fmt.Errorf("line %d: %s listed twice: %w", n, mod, ErrSyntax)
		}
		d[mod] = strings.Fields(rest)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	return d, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// Lookup returns the path of the module with the given name or path.
func (d Deps) Lookup(name string) (string, error) {
	if _, ok := d[name]; ok {
		return name, nil
	}
	want := Name(name)
	var found []string
	for p := range d {
		if Name(p) == want {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%s: %w", name, ErrUnknownModule)
	case 1:
		return found[0], nil
	}
	sort.Strings(found)
	return "", fmt.Errorf("%s: ambiguous, matches %s", name, strings.Join(found, ", "))
}

// Closure returns the named modules and everything they depend on, in an
// order in which each can be loaded (dependencies first). The order is
// deterministic: among modules with no constraint between them, requested
// order then path order wins.
func (d Deps) Closure(names ...string) ([]string, error) {
	var out []string
	state := map[string]int{} // 0 unseen, 1 on stack, 2 done
	var visit func(p string, from string) error
	visit = func(p, from string) error {
		switch state[p] {
		case 1:
			return fmt.Errorf("%s: %w", p, ErrCycle)
		case 2:
			return nil
		}
		deps, ok := d[p]
		if !ok {
			return fmt.Errorf("%s (needed by %s): %w", p, from, ErrUnknownModule)
		}
		state[p] = 1
		sorted := append([]string(nil), deps...)
		sort.Strings(sorted)
		for _, dep := range sorted {
			if err := visit(dep, p); err != nil {
				return err
			}
		}
		state[p] = 2
		out = append(out, p)
		return nil
	}
	for _, n := range names {
		p, err := d.Lookup(n)
		if err != nil {
			return nil, err
		}
		if err := visit(p, "request"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// All returns every module in load order.
func (d Deps) All() ([]string, error) {
	paths := make([]string, 0, len(d))
	for p := range d {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return d.Closure(paths...)
}

// Write emits d in modules.dep format, sorted by path so output is
// reproducible.
func (d Deps) Write(w io.Writer) error {
	paths := make([]string, 0, len(d))
	for p := range d {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	bw := bufio.NewWriter(w)
	for _, p := range paths {
		line := p + ":"
		if len(d[p]) > 0 {
			line += " " + strings.Join(d[p], " ")
		}
		if _, err := bw.WriteString(line + "\n"); err != nil {
			return fmt.Errorf("write modules.dep: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write modules.dep: %w", err)
	}
	return nil
}

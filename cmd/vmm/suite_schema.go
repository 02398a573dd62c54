package main

import (
	"bytes"
	"errors"
	"flag"
	"path/filepath"
	"strings"

	"github.com/vmmdev/vmm/internal/flagfile"
	"github.com/vmmdev/vmm/suite"
)

// repeatable is a flag.Value that may be given several times (--disk, --net).
type repeatable interface{ repeatable() }

func (*diskList) repeatable() {}
func (*nicList) repeatable()  {}

// runSchema describes `vmm run`'s flags for suite files: every flag is a
// suite key, with the TOML type its --config JSON type maps to.
func runSchema() suite.Schema {
	s := suite.Schema{}
	newRunCmd().fs.VisitAll(func(f *flag.Flag) {
		var spec suite.Flag
		switch flagfile.KindOf(f) {
		case flagfile.KindBool:
			spec.Kind = suite.Bool
		case flagfile.KindInteger:
			spec.Kind = suite.Int
		}
		if _, ok := f.Value.(repeatable); ok {
			spec.Kind = suite.List
		}
		switch f.Name {
		case "kernel", "initrd", "kvm-device", "cloud-init":
			spec.Rel = relPath
		case "firmware":
			spec.Rel = func(dir, v string) string {
				if v == "seabios" {
					return v
				}
				if v == "ovmf" || strings.HasPrefix(v, "ovmf,") {
					// The files named by code= and vars= are relative
					// to the suite.
					opts := strings.Split(v, ",")
					for i, o := range opts {
						for _, k := range []string{"code=", "vars="} {
							if p, ok := strings.CutPrefix(o, k); ok && p != "" {
								opts[i] = k + relPath(dir, p)
							}
						}
					}
					return strings.Join(opts, ",")
				}
				return relPath(dir, v)
			}
		case "disk":
			spec.Rel = func(dir, v string) string {
				p, opts, has := strings.Cut(v, ",")
				if has {
					return relPath(dir, p) + "," + opts
				}
				return relPath(dir, p)
			}
		case "console":
			spec.Rel = func(dir, v string) string {
				for _, prefix := range []string{"file:", "virtio:file:"} {
					if p, ok := strings.CutPrefix(v, prefix); ok {
						return prefix + relPath(dir, p)
					}
				}
				return v
			}
		}
		s[f.Name] = spec
	})
	return s
}

// relPath makes a path written in a suite relative to the suite's directory.
func relPath(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// checkRunArgs checks a case's command line ("run", flags...) with vmm run's
// own parsing and validation; the error is vmm run's one line.
func checkRunArgs(args []string) error {
	var out bytes.Buffer
	r := newRunCmd()
	r.fs.SetOutput(&out)
	if _, _, code := r.prepare(args[1:], &out); code != ok {
		line, _, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
		if line == "" {
			line = "refused by vmm run"
		}
		return errors.New(line)
	}
	return nil
}

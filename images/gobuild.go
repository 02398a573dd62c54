package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// BuildGo builds the Go package pkg (an import path, or a path relative to
// the module root such as "./images/agent") into the static binary out, with
// CGO_ENABLED=0 so it runs in an initramfs without a libc. -trimpath keeps
// the binary independent of where the tree is checked out.
func BuildGo(ctx context.Context, pkg, out string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	out, err = filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	s := step{name: "go build " + pkg, timeout: 10 * time.Minute, dir: root,
		env: []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}}
	// -buildvcs=false: the binary depends on the sources only, not on the
	// checkout's git state (and needs no git).
	_, err = s.run(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
	return err
}

// SourceKey hashes everything a build of pkgs depends on: the content of
// every Go source file of this module's packages in their dependency graph,
// the versions of external modules, the Go version and target. Editing any
// file that could change the binaries changes the key.
func SourceKey(ctx context.Context, pkgs ...string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	s := step{name: "go list", timeout: 5 * time.Minute, dir: root,
		env: []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}}
	args := append([]string{"go", "list", "-deps", "-json=Dir,ImportPath,GoFiles,EmbedFiles,Module,Standard"}, pkgs...)
	raw, err := s.run(ctx, args...)
	if err != nil {
		return "", err
	}
	type listed struct {
		Dir, ImportPath     string
		GoFiles, EmbedFiles []string
		Standard            bool
		Module              *struct {
			Path, Version string
			Main          bool
		}
	}
	parts := []string{runtime.Version(), "linux/amd64", "cgo=0"}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", fmt.Errorf("go list output: %w", err)
		}
		switch {
		case p.Standard:
			continue // covered by the Go version
		case p.Module == nil || !p.Module.Main:
			v := "?"
			if p.Module != nil {
				v = p.Module.Path + "@" + p.Module.Version
			}
			parts = append(parts, p.ImportPath, v)
			continue
		}
		files := append(append([]string(nil), p.GoFiles...), p.EmbedFiles...)
		sort.Strings(files)
		for _, f := range files {
			sum, err := hashFile(filepath.Join(p.Dir, f))
			if err != nil {
				return "", fmt.Errorf("source key: %w", err)
			}
			parts = append(parts, p.ImportPath+"/"+f, sum)
		}
	}
	return KeyOf(parts...), nil
}

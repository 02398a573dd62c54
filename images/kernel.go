package images

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vmmdev/vmm/images/moddep"
)

// ErrNoKernelPackage is returned when apt knows no candidate for the kernel
// package (and cannot be refreshed because we are not root).
var ErrNoKernelPackage = errors.New("kernel package not found in apt's lists")

// KernelArtifacts is a Debian kernel unpacked for our images.
type KernelArtifacts struct {
	// Package and PackageVersion name the Debian package it came from,
	// e.g. "linux-image-6.1.0-56-amd64" and "6.1.192-2".
	Package, PackageVersion string
	// Version is the kernel release (uname -r), e.g. "6.1.0-56-amd64".
	Version string
	// Vmlinuz is the bzImage; ConfigFile the kernel's build config.
	Vmlinuz, ConfigFile string
	// ModulesRoot holds lib/modules/<Version>/ with only the modules of
	// Config.Modules and their dependencies, and a modules.dep for them.
	ModulesRoot string
}

// ModulesDir returns ModulesRoot/lib/modules/<Version>.
func (k *KernelArtifacts) ModulesDir() string {
	return filepath.Join(k.ModulesRoot, "lib", "modules", k.Version)
}

// Kernel resolves cfg.KernelPackage with apt, downloads the versioned image
// package with apt-get download, unpacks it with dpkg -x into a scratch
// directory (never installing it) and keeps the kernel, its config and the
// modules cfg.Modules needs under <Out>/kernel. Rebuilt only when the
// package version or the module list changes or the artifact is damaged.
func Kernel(ctx context.Context, cfg Config) (*KernelArtifacts, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	pkg, pkgVer, err := resolveKernelPackage(ctx, cfg)
	if err != nil {
		return nil, err
	}
	release := strings.TrimPrefix(pkg, "linux-image-")
	mods := append([]string(nil), cfg.Modules...)
	sort.Strings(mods)
	key := KeyOf(append([]string{"kernel-v1", pkg, pkgVer}, mods...)...)
	dir := filepath.Join(cfg.Out, "kernel")
	rebuilt, err := Cached(dir, key, func(tmp string) error {
		deb, err := kernelDeb(ctx, cfg, pkg, pkgVer)
		if err != nil {
			return err
		}
		return unpackKernel(ctx, cfg, deb, release, tmp)
	})
	if err != nil {
		return nil, err
	}
	cfg.Log.Info("kernel ready", "package", pkg, "version", pkgVer, "dir", dir, "rebuilt", rebuilt)
	return &KernelArtifacts{
		Package:        pkg,
		PackageVersion: pkgVer,
		Version:        release,
		Vmlinuz:        filepath.Join(dir, "vmlinuz-"+release),
		ConfigFile:     filepath.Join(dir, "config-"+release),
		ModulesRoot:    filepath.Join(dir, "modules"),
	}, nil
}

// resolveKernelPackage asks apt which versioned image package the
// meta-package depends on, refreshing apt's lists once if it knows none.
func resolveKernelPackage(ctx context.Context, cfg Config) (pkg, version string, err error) {
	show := func() (string, string, error) {
		out, err := step{name: "apt-cache show " + cfg.KernelPackage, timeout: cfg.StepTimeout}.
			run(ctx, "apt-cache", "show", "--no-all-versions", cfg.KernelPackage)
		if err != nil {
			return "", "", err
		}
		p, err := kernelDependency(out)
		if err != nil {
			return "", "", err
		}
		out, err = step{name: "apt-cache show " + p, timeout: cfg.StepTimeout}.
			run(ctx, "apt-cache", "show", "--no-all-versions", p)
		if err != nil {
			return "", "", err
		}
		v := field(out, "Version")
		if v == "" {
			return "", "", fmt.Errorf("apt-cache show %s: no Version: %w", p, ErrNoKernelPackage)
		}
		return p, v, nil
	}
	pkg, version, err = show()
	if err == nil {
		return pkg, version, nil
	}
	if os.Geteuid() != 0 {
		return "", "", fmt.Errorf("%w (run apt-get update as root): %w", ErrNoKernelPackage, err)
	}
	cfg.Log.Info("refreshing apt lists", "reason", err)
	if _, uerr := (step{name: "apt-get update", timeout: cfg.StepTimeout}).run(ctx, "apt-get", "update"); uerr != nil {
		return "", "", uerr
	}
	return show()
}

// kernelDependency finds the versioned linux-image package in the Depends
// field of apt-cache show output for the meta-package.
func kernelDependency(show []byte) (string, error) {
	for _, alt := range strings.FieldsFunc(field(show, "Depends"), func(r rune) bool { return r == ',' || r == '|' }) {
		name, _, _ := strings.Cut(strings.TrimSpace(alt), " ")
		if strings.HasPrefix(name, "linux-image-") && name != "linux-image-amd64" {
			return name, nil
		}
	}
	return "", fmt.Errorf("no linux-image-* in Depends: %w", ErrNoKernelPackage)
}

// field returns the first value of a deb822 field.
func field(stanza []byte, name string) string {
	sc := bufio.NewScanner(bytes.NewReader(stanza))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// kernelDeb downloads the package into <Out>/debs, cached by version.
func kernelDeb(ctx context.Context, cfg Config, pkg, version string) (string, error) {
	deb := filepath.Join(cfg.Out, "debs", pkg+"_"+version+".deb")
	_, err := Cached(deb, KeyOf("deb-v1", pkg, version), func(tmp string) error {
		dl, err := os.MkdirTemp(filepath.Dir(deb), "download-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dl)
		// apt-get download as root warns that _apt cannot write here; harmless.
		if _, err := (step{name: "apt-get download " + pkg, timeout: cfg.StepTimeout, dir: dl}).
			run(ctx, "apt-get", "download", pkg+"="+version); err != nil {
			return err
		}
		got, err := filepath.Glob(filepath.Join(dl, "*.deb"))
		if err != nil || len(got) != 1 {
			return fmt.Errorf("apt-get download %s: expected one .deb, found %v", pkg, got)
		}
		return os.Rename(got[0], tmp)
	})
	return deb, err
}

// unpackKernel extracts deb and copies what our images need into out.
func unpackKernel(ctx context.Context, cfg Config, deb, release, out string) error {
	scratch, err := os.MkdirTemp(cfg.Out, "unpack-")
	if err != nil {
		return fmt.Errorf("unpack kernel: %w", err)
	}
	defer os.RemoveAll(scratch)
	if _, err := (step{name: "dpkg -x", timeout: cfg.StepTimeout}).run(ctx, "dpkg", "-x", deb, scratch); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("unpack kernel: %w", err)
	}
	for _, f := range []string{"vmlinuz-" + release, "config-" + release} {
		if err := copyFile(filepath.Join(scratch, "boot", f), filepath.Join(out, f), 0o644); err != nil {
			return fmt.Errorf("unpack kernel: %w", err)
		}
	}
	src := filepath.Join(scratch, "lib", "modules", release)
	dst := filepath.Join(out, "modules", "lib", "modules", release)
	return copyModules(ctx, cfg, src, dst, cfg.Modules)
}

// copyModules copies the named modules and their dependency closure from
// the module tree src to dst, decompressing them, and writes dst/modules.dep.
func copyModules(ctx context.Context, cfg Config, src, dst string, names []string) error {
	index := map[string]string{} // module name -> path relative to src
	err := filepath.WalkDir(filepath.Join(src, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(d.Name(), ".ko") {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		index[moddep.Name(rel)] = filepath.ToSlash(rel)
		return nil
	})
	if err != nil {
		return fmt.Errorf("index modules: %w", err)
	}
	deps := moddep.Deps{}
	var add func(name, from string) error
	add = func(name, from string) error {
		rel, ok := index[moddep.Name(name)]
		if !ok {
			return fmt.Errorf("module %s (wanted by %s): %w", name, from, moddep.ErrUnknownModule)
		}
		plain := plainModulePath(rel)
		if _, done := deps[plain]; done {
			return nil
		}
		deps[plain] = nil // mark before recursing: cycles terminate
		image, err := moduleImage(ctx, cfg, filepath.Join(src, rel))
		if err != nil {
			return err
		}
		mi, err := readModinfo(image)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if err := writeFile(filepath.Join(dst, plain), image, 0o644); err != nil {
			return err
		}
		for _, d := range mi.Depends {
			if err := add(d, moddep.Name(rel)); err != nil {
				return err
			}
			deps[plain] = append(deps[plain], plainModulePath(index[moddep.Name(d)]))
		}
		return nil
	}
	for _, n := range names {
		if err := add(n, "config"); err != nil {
			return err
		}
	}
	if _, err := deps.All(); err != nil {
		return fmt.Errorf("module dependencies: %w", err)
	}
	var buf bytes.Buffer
	if err := deps.Write(&buf); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dst, "modules.dep"), buf.Bytes(), 0o644); err != nil {
		return err
	}
	// modules.builtin lets a loader tell "built in" from "missing".
	if err := copyFile(filepath.Join(src, "modules.builtin"), filepath.Join(dst, "modules.builtin"), 0o644); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// plainModulePath drops a compression suffix: we store modules uncompressed
// so that loaders need no decompressor (and kernels without
// CONFIG_MODULE_DECOMPRESS can load them).
func plainModulePath(rel string) string {
	if i := strings.LastIndex(rel, ".ko"); i >= 0 {
		return rel[:i+3]
	}
	return rel
}

// moduleImage reads a module file, decompressing .ko.gz in Go and
// .ko.xz/.ko.zst with the xz/zstd tools. Debian 12 ships plain .ko files
// (CONFIG_MODULE_COMPRESS_NONE); later releases compress with xz.
func moduleImage(ctx context.Context, cfg Config, path string) ([]byte, error) {
	switch {
	case strings.HasSuffix(path, ".ko"):
		return os.ReadFile(path)
	case strings.HasSuffix(path, ".ko.gz"):
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		data, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return data, nil
	case strings.HasSuffix(path, ".ko.xz"):
		return step{name: "xz -dc", timeout: cfg.StepTimeout}.run(ctx, "xz", "-dc", path)
	case strings.HasSuffix(path, ".ko.zst"):
		return step{name: "zstd -dc", timeout: cfg.StepTimeout}.run(ctx, "zstd", "-dc", path)
	}
	return nil, fmt.Errorf("%s: unknown module compression", path)
}

// ModuleClosure returns the paths (absolute, under root) of the named modules
// and their dependencies in load order, from root/lib/modules/<version>/
// modules.dep (as Kernel writes it). Names may use '-' or '_'.
func ModuleClosure(root, version string, names ...string) ([]string, error) {
	dir := filepath.Join(root, "lib", "modules", version)
	raw, err := os.ReadFile(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("module closure: %w", err)
	}
	deps, err := moddep.Parse(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("module closure: %w", err)
	}
	order, err := deps.Closure(names...)
	if err != nil {
		return nil, fmt.Errorf("module closure: %w", err)
	}
	out := make([]string, len(order))
	for i, rel := range order {
		out[i] = filepath.Join(dir, filepath.FromSlash(rel))
	}
	return out, nil
}

func writeFile(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, perm)
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

package images

import (
	"bufio"
	"bytes"
	"context"
	_ "embed" // the patch and device list below
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The outer QEMU: Debian's qemu-system-x86_64, rebuilt from Debian's source
// package of the installed version with one fix of ours. Debian's binary
// aborts ("tcg_handle_interrupt: assertion failed") when a guest of the
// nested test host's KVM writes CR8 while that KVM has a virtual interrupt
// pending; OVMF and Windows do that all the time (see qemu/cr8-bql.patch).

// Errors a caller may branch on.
var (
	// ErrOuterQEMUDeps: packages the build needs are missing and cannot be
	// installed (not root, or not allowed).
	ErrOuterQEMUDeps = errors.New("the outer QEMU's build dependencies are missing")
	// ErrNoQEMUSource: apt cannot fetch the source of the installed QEMU.
	ErrNoQEMUSource = errors.New("the source of the installed Debian QEMU is not available")
)

// cr8Patch is our fix, applied with patch -p1 to Debian's patched source.
//
//go:embed qemu/cr8-bql.patch
var cr8Patch string

// outerDevices is the device list (--with-devices-x86_64) of the build.
//
//go:embed qemu/vmm-outer.mak
var outerDevices string

// cr8PatchMarker is a line the patch adds, once: the check that it applied.
const cr8PatchMarker = "bool vmm_need_bql = !qemu_mutex_iothread_locked();"

// patchedFile is the file the patch changes.
const patchedFile = "target/i386/tcg/sysemu/misc_helper.c"

// qemuBinaryPackage is Debian's package whose source is rebuilt; its
// firmware and data (/usr/share/qemu, linked to /usr/share/seabios) are what
// the rebuilt binary loads.
const qemuBinaryPackage = "qemu-system-x86"

// outerQEMUBuildTimeout bounds compiling QEMU: about 5 minutes on 2 idle
// cores, far more on a loaded CI machine at the lowest priority.
const outerQEMUBuildTimeout = 90 * time.Minute

// debSrcFile is where the deb-src entries go when apt has none for the
// installed QEMU (deb822; a sibling .list for one-line entries).
const debSrcFile = "/etc/apt/sources.list.d/vmm-deb-src"

// PatchedQEMUBuildDeps are the Debian packages the build needs: apt-get
// source (dpkg-dev, xz-utils, patch), QEMU 7.2's meson build and the
// libraries of the features built (glib, pixman and zlib always; attr and
// cap-ng for virtfs). A new slice each call.
func PatchedQEMUBuildDeps() []string {
	return []string{
		"dpkg-dev", "xz-utils", "patch", "gcc", "make", "ninja-build", "meson", "python3", "pkg-config",
		"libglib2.0-dev", "libpixman-1-dev", "zlib1g-dev", "libfdt-dev", "libattr1-dev", "libcap-ng-dev",
	}
}

// outerConfigureArgs are the configure flags: x86_64 system emulation with
// TCG and nothing optional but virtfs (and libfdt, which the target
// requires: the system's, as the tarball has no dtc), the devices of qemu/vmm-outer.mak,
// no tools, docs or firmware blobs (Debian's tarball has none). Data and
// firmware come from Debian's installed package, at the paths Debian's
// binary uses. The prefix is never installed to: it only has to differ
// from /usr, so that QEMU does not look for its data relative to wherever
// the binary lies.
func outerConfigureArgs(debVersion string) []string {
	return []string{
		"--prefix=/usr/local/lib/vmm-outer-qemu",
		"--sysconfdir=/etc", "--localstatedir=/var", "--datadir=/usr/share",
		"--firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu",
		"--with-pkgversion=Debian " + debVersion + ", vmm outer QEMU: CR8 write under the BQL",
		"--target-list=x86_64-softmmu",
		"--without-default-features", "--without-default-devices", "--with-devices-x86_64=vmm-outer",
		"--enable-tcg", "--enable-fdt=system", "--enable-virtfs", "--enable-attr", "--enable-cap-ng",
		"--disable-docs", "--disable-tools", "--disable-user", "--disable-install-blobs",
		"--audio-drv-list=", "--with-git-submodules=ignore",
	}
}

// PatchedQEMUBuild is a built outer QEMU.
type PatchedQEMUBuild struct {
	// Binary is qemu-system-x86_64, under Dir.
	Binary, Dir string
	// SourcePackage and SourceVersion name Debian's source it was built
	// from ("qemu", "1:7.2+dfsg-7+deb12u18").
	SourcePackage, SourceVersion string
	// Rebuilt is set when this call built it (a cache miss).
	Rebuilt bool
	// Took is how long the build took (zero when reused).
	Took time.Duration
}

// PatchedQEMU returns the outer QEMU, building it on the first call on a
// machine: apt-get source of the installed qemu-system-x86's exact Debian
// version (adding deb-src entries when apt has none), our patch, a minimal
// configure and a build at the lowest CPU and I/O priority. The binary is
// kept in <Cache>/outer-qemu-<key>/bin, keyed by the Debian version, the
// patch, the device list and the configure flags, outside any clone of the
// repository, so every checkout and CI run on the machine reuses it.
// Debian's qemu-system-x86 must be installed (its firmware and data are
// used). With install (and root) missing build dependencies are
// apt-get installed; otherwise they are an ErrOuterQEMUDeps.
func PatchedQEMU(ctx context.Context, cfg Config, install bool) (*PatchedQEMUBuild, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Cache == "" {
		return nil, errors.New("outer QEMU: no cache directory (no home directory: set XDG_CACHE_HOME)")
	}
	src, ver, err := installedQEMUSource(ctx, cfg)
	if err != nil {
		return nil, err
	}
	key := PatchedQEMUKey(src, ver)
	b := &PatchedQEMUBuild{Dir: filepath.Join(cfg.Cache, "outer-qemu-"+key[:16]), SourcePackage: src, SourceVersion: ver}
	b.Binary = filepath.Join(b.Dir, "bin", QEMUBinary)
	start := time.Now()
	b.Rebuilt, err = Cached(b.Dir, key, func(tmp string) error {
		cfg.Log.Warn("building the outer QEMU from Debian's source: once per machine, minutes",
			"source", src+"="+ver, "jobs", cfg.Jobs, "dir", b.Dir)
		return buildOuterQEMU(ctx, cfg, install, src, ver, tmp)
	})
	if err != nil {
		return nil, fmt.Errorf("outer QEMU: %w", err)
	}
	if b.Rebuilt {
		b.Took = time.Since(start)
	}
	cfg.Log.Info("outer QEMU ready", "binary", b.Binary, "source", src+"="+ver, "rebuilt", b.Rebuilt, "took", b.Took)
	return b, nil
}

// PatchedQEMUKey is the cache key of the outer QEMU built from Debian's
// source package src at version ver.
func PatchedQEMUKey(src, ver string) string {
	return KeyOf("outer-qemu-v1", src, ver, cr8Patch, outerDevices, strings.Join(outerConfigureArgs(ver), "\x00"))
}

// installedQEMUSource names the source package and version of the
// installed qemu-system-x86 (a binNMU's binary version differs from it).
func installedQEMUSource(ctx context.Context, cfg Config) (src, ver string, err error) {
	out, err := step{name: "dpkg-query " + qemuBinaryPackage, timeout: cfg.StepTimeout}.
		run(ctx, "dpkg-query", "-W", "-f=${db:Status-Status} ${source:Package} ${source:Version}", qemuBinaryPackage)
	if err != nil {
		return "", "", fmt.Errorf("outer QEMU: %s must be installed: %w", qemuBinaryPackage, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 3 || f[0] != "installed" {
		return "", "", fmt.Errorf("outer QEMU: %s is not installed (dpkg-query: %q)", qemuBinaryPackage, out)
	}
	return f[1], f[2], nil
}

// buildOuterQEMU builds into out: out/bin/qemu-system-x86_64 and
// out/BUILD-INFO (what it was built from, for people).
func buildOuterQEMU(ctx context.Context, cfg Config, install bool, src, ver, out string) error {
	if err := ensureBuildDeps(ctx, cfg, install); err != nil {
		return err
	}
	if err := ensureDebSrc(ctx, cfg, install, "/etc/apt", src, ver); err != nil {
		return err
	}
	// The source and its build (about 1 GB) live next to the cache, not
	// in /tmp, which may be a small tmpfs.
	scratch, err := os.MkdirTemp(cfg.Cache, ".outer-qemu-src-")
	if err != nil {
		return fmt.Errorf("scratch dir: %w", err)
	}
	defer os.RemoveAll(scratch)
	// apt-get source unpacks with dpkg-source -x, which applies Debian's
	// own patches.
	if _, err := (step{name: "apt-get source " + src, timeout: cfg.StepTimeout, dir: scratch}).
		run(ctx, "apt-get", "source", "-q", "--only-source", src+"="+ver); err != nil {
		return err
	}
	dir, err := sourceDir(scratch)
	if err != nil {
		return err
	}
	if err := applyCR8Patch(ctx, cfg, scratch, dir); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "configs", "devices", "x86_64-softmmu", "vmm-outer.mak"), []byte(outerDevices), 0o644); err != nil {
		return fmt.Errorf("device list: %w", err)
	}
	build := filepath.Join(dir, "build-vmm")
	if err := os.Mkdir(build, 0o755); err != nil {
		return fmt.Errorf("build dir: %w", err)
	}
	// Lowest CPU and I/O priority: the build shares the machine with tests.
	lowPrio := []string{"nice", "-n", "19", "ionice", "-c3"}
	configure := append(append(lowPrio, "../configure"), outerConfigureArgs(ver)...)
	if _, err := (step{name: "configure QEMU", timeout: cfg.StepTimeout, dir: build, combined: true}).run(ctx, configure...); err != nil {
		return err
	}
	ninja := append(lowPrio, "ninja", "-j", strconv.Itoa(cfg.Jobs), QEMUBinary)
	if _, err := (step{name: "build QEMU (ninja)", timeout: outerQEMUBuildTimeout, dir: build, combined: true}).run(ctx, ninja...); err != nil {
		return err
	}
	bin := filepath.Join(out, "bin", QEMUBinary)
	if err := copyFile(filepath.Join(build, QEMUBinary), bin, 0o755); err != nil {
		return fmt.Errorf("install QEMU: %w", err)
	}
	if err := checkOuterQEMU(ctx, cfg, bin); err != nil {
		return err
	}
	info := fmt.Sprintf("qemu-system-x86_64 built by vmm (images/outerqemu.go) from Debian's source %s=%s\n"+
		"with images/qemu/cr8-bql.patch and images/qemu/vmm-outer.mak\nconfigure %s\n",
		src, ver, strings.Join(outerConfigureArgs(ver), " "))
	return os.WriteFile(filepath.Join(out, "BUILD-INFO"), []byte(info), 0o644)
}

// sourceDir finds the one directory apt-get source unpacked into scratch.
func sourceDir(scratch string) (string, error) {
	ents, err := os.ReadDir(scratch)
	if err != nil {
		return "", fmt.Errorf("apt-get source: %w", err)
	}
	var dirs []string
	for _, e := range ents {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(scratch, e.Name()))
		}
	}
	if len(dirs) != 1 {
		return "", fmt.Errorf("apt-get source: want one unpacked directory, found %q", dirs)
	}
	return dirs[0], nil
}

// applyCR8Patch applies our patch to the source in dir and checks that the
// result has its marker exactly once.
func applyCR8Patch(ctx context.Context, cfg Config, scratch, dir string) error {
	p := filepath.Join(scratch, "cr8-bql.patch")
	if err := os.WriteFile(p, []byte(cr8Patch), 0o644); err != nil {
		return fmt.Errorf("cr8 patch: %w", err)
	}
	// --forward: a source that already has the fix is an error, not a
	// silent reversal.
	if _, err := (step{name: "patch (cr8-bql.patch)", timeout: cfg.StepTimeout, dir: dir, combined: true}).
		run(ctx, "patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch", "-i", p); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(dir, patchedFile))
	if err != nil {
		return fmt.Errorf("cr8 patch: %w", err)
	}
	if n := strings.Count(string(data), cr8PatchMarker); n != 1 {
		return fmt.Errorf("cr8 patch: %s has its change %d times, want 1", patchedFile, n)
	}
	return nil
}

// checkOuterQEMU runs the new binary: it must start, be ours, and offer
// the machine and devices the nested test host uses.
func checkOuterQEMU(ctx context.Context, cfg Config, bin string) error {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"-version"}, []string{"vmm outer QEMU"}},
		{[]string{"-machine", "help"}, []string{"\npc "}},
		{[]string{"-device", "help"}, []string{`"virtio-9p-pci"`, `"virtio-serial-pci"`, `"virtserialport"`}},
	} {
		out, err := step{name: "check outer QEMU " + strings.Join(c.args, " "), timeout: time.Minute}.run(ctx, append([]string{bin}, c.args...)...)
		if err != nil {
			return err
		}
		for _, w := range c.want {
			if !strings.Contains(string(out), w) {
				return fmt.Errorf("check outer QEMU: %s %s does not list %q", bin, strings.Join(c.args, " "), strings.TrimSpace(w))
			}
		}
	}
	return nil
}

// ensureBuildDeps apt-get installs what PatchedQEMUBuildDeps lists and is
// missing, when allowed and root.
func ensureBuildDeps(ctx context.Context, cfg Config, install bool) error {
	var missing []string
	for _, p := range PatchedQEMUBuildDeps() {
		out, err := step{name: "dpkg-query " + p, timeout: time.Minute}.run(ctx, "dpkg-query", "-W", "-f=${db:Status-Status}", p)
		if err != nil || strings.TrimSpace(string(out)) != "installed" {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if !install || os.Geteuid() != 0 {
		return fmt.Errorf("%w: %s (as root: apt-get install %s)", ErrOuterQEMUDeps, strings.Join(missing, " "), strings.Join(missing, " "))
	}
	cfg.Log.Warn("installing the outer QEMU's build dependencies", "packages", missing)
	if _, err := (step{name: "apt-get update", timeout: cfg.StepTimeout}).run(ctx, "apt-get", "update"); err != nil {
		return err
	}
	s := step{name: "apt-get install (outer QEMU build dependencies)", timeout: cfg.StepTimeout, env: []string{"DEBIAN_FRONTEND=noninteractive"}}
	_, err := s.run(ctx, append([]string{"apt-get", "install", "-y", "-q", "--no-install-recommends"}, missing...)...)
	return err
}

// ensureDebSrc makes sure apt can fetch source src at version ver: when its
// lists have no such source, and install is allowed as root, it adds
// deb-src entries mirroring the Debian archives apt already uses
// (debSrcFile) and refreshes the lists. aptDir is /etc/apt.
func ensureDebSrc(ctx context.Context, cfg Config, install bool, aptDir, src, ver string) error {
	has := func() (bool, error) {
		out, err := step{name: "apt-cache showsrc " + src, timeout: cfg.StepTimeout}.run(ctx, "apt-cache", "showsrc", "--only-source", src)
		if err != nil {
			return false, err
		}
		return hasSourceVersion(out, src, ver), nil
	}
	ok, showErr := has()
	if ok {
		return nil
	}
	if !install || os.Geteuid() != 0 {
		return fmt.Errorf("%w: apt has no source %s=%s (%v); as root this build adds deb-src entries itself, or add them to /etc/apt/sources.list.d and run apt-get update",
			ErrNoQEMUSource, src, ver, showErr)
	}
	deb822, oneLine, err := readAptSources(aptDir)
	if err != nil {
		return err
	}
	stanzas, lines := debSrcStanzas(deb822), debSrcLines(oneLine)
	if stanzas == "" && lines == "" {
		return fmt.Errorf("%w: no Debian archive (a deb entry with /debian in its URI) under %s to add deb-src entries for", ErrNoQEMUSource, aptDir)
	}
	header := "# Written by vmm's outer QEMU build (images/outerqemu.go): Debian's source\n" +
		"# packages, from the archives the deb entries name.\n\n"
	for _, f := range []struct{ path, body string }{{debSrcFile + ".sources", stanzas}, {debSrcFile + ".list", lines}} {
		if f.body == "" {
			continue
		}
		if err := writeFileAtomic(f.path, []byte(header+f.body), 0o644); err != nil {
			return fmt.Errorf("deb-src entries: %w", err)
		}
	}
	cfg.Log.Warn("added deb-src entries for Debian's archives", "file", debSrcFile+".{sources,list}")
	if _, err := (step{name: "apt-get update", timeout: cfg.StepTimeout}).run(ctx, "apt-get", "update"); err != nil {
		return err
	}
	if ok, err := has(); err != nil || !ok {
		return fmt.Errorf("%w: apt has no source %s=%s even with deb-src entries (%v): the archive may have moved on; upgrade %s and retry",
			ErrNoQEMUSource, src, ver, err, qemuBinaryPackage)
	}
	return nil
}

// hasSourceVersion reports whether apt-cache showsrc output lists source
// package src at version ver.
func hasSourceVersion(showsrc []byte, src, ver string) bool {
	pkg := ""
	sc := bufio.NewScanner(bytes.NewReader(showsrc))
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.HasPrefix(k, " ") {
			continue
		}
		switch v = strings.TrimSpace(v); k {
		case "Package":
			pkg = v
		case "Version":
			if pkg == src && v == ver {
				return true
			}
		}
	}
	return false
}

// readAptSources returns the deb822 files (*.sources) and the one-line
// lists (sources.list, *.list) under aptDir, skipping our own.
func readAptSources(aptDir string) (deb822, oneLine [][]byte, err error) {
	read := func(p string) ([]byte, error) {
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return data, err
	}
	main, err := read(filepath.Join(aptDir, "sources.list"))
	if err != nil {
		return nil, nil, fmt.Errorf("apt sources: %w", err)
	}
	oneLine = append(oneLine, main)
	ents, err := os.ReadDir(filepath.Join(aptDir, "sources.list.d"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("apt sources: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(aptDir, "sources.list.d", e.Name())
		if strings.HasPrefix(e.Name(), filepath.Base(debSrcFile)+".") {
			continue // ours: derived from the others
		}
		ext := filepath.Ext(e.Name())
		if ext != ".sources" && ext != ".list" {
			continue
		}
		data, err := read(p)
		if err != nil {
			return nil, nil, fmt.Errorf("apt sources: %w", err)
		}
		if ext == ".sources" {
			deb822 = append(deb822, data)
		} else {
			oneLine = append(oneLine, data)
		}
	}
	return deb822, oneLine, nil
}

// isDebianURI reports whether an archive URI is Debian's (deb.debian.org,
// a mirror, snapshot.debian.org): its path has a /debian component.
func isDebianURI(uri string) bool {
	return strings.Contains(uri+"/", "/debian/") || strings.Contains(uri, "/debian-security")
}

// debSrcStanzas turns the enabled deb822 stanzas of Debian archives with
// Types "deb" into the same stanzas with Types "deb-src", once each.
func debSrcStanzas(files [][]byte) string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, data := range files {
		for _, stanza := range strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n\n") {
			var lines []string
			types, uris, enabled := "", "", "yes"
			for _, l := range strings.Split(stanza, "\n") {
				if strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "" {
					continue
				}
				k, v, _ := strings.Cut(l, ":")
				switch strings.ToLower(k) {
				case "types":
					types = v
					continue
				case "uris":
					uris = v
				case "enabled":
					enabled = strings.TrimSpace(v)
				}
				lines = append(lines, l)
			}
			if !hasWord(types, "deb") || enabled == "no" || !anyDebianURI(strings.Fields(uris)) {
				continue
			}
			out := "Types: deb-src\n" + strings.Join(lines, "\n") + "\n"
			if !seen[out] {
				seen[out] = true
				b.WriteString(out + "\n")
			}
		}
	}
	return b.String()
}

// debSrcLines turns one-line "deb" entries of Debian archives into
// "deb-src" entries, once each.
func debSrcLines(files [][]byte) string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, data := range files {
		for _, l := range strings.Split(string(data), "\n") {
			f := strings.Fields(l)
			if len(f) < 3 || f[0] != "deb" {
				continue
			}
			// deb [options] URI suite [components]
			uri := f[1]
			if strings.HasPrefix(uri, "[") {
				for i, w := range f[1:] {
					if strings.HasSuffix(w, "]") && i+2 < len(f) {
						uri = f[i+2]
						break
					}
				}
			}
			if !isDebianURI(uri) {
				continue
			}
			out := "deb-src" + strings.TrimPrefix(strings.TrimSpace(l), "deb") + "\n"
			if !seen[out] {
				seen[out] = true
				b.WriteString(out)
			}
		}
	}
	return b.String()
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

func anyDebianURI(uris []string) bool {
	for _, u := range uris {
		if isDebianURI(u) {
			return true
		}
	}
	return false
}

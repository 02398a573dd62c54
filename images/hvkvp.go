package images

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// KVPDaemon is Debian's hv_kvp_daemon (package hyperv-daemons) as the
// guest agent runs it: the daemon, what it needs to run (libc and the
// dynamic loader from libc6, its only dependency) and Debian's os-release
// (base-files), which it reads for the OSName it reports to the host.
const KVPDaemon = "usr/sbin/hv_kvp_daemon"

// kvpFiles are the files taken from the packages: path in the package ->
// path in the initramfs. The loader goes where the daemon's PT_INTERP
// names it (/lib64/ld-linux-x86-64.so.2, a symlink in the package).
var kvpFiles = []struct{ pkg, from, to string }{
	{"hyperv-daemons", KVPDaemon, KVPDaemon},
	{"libc6", "lib/x86_64-linux-gnu/libc.so.6", "lib/x86_64-linux-gnu/libc.so.6"},
	{"libc6", "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"},
	{"base-files", "usr/lib/os-release", "etc/os-release"},
}

// KVPDaemonEntries downloads the current hyperv-daemons, libc6 and
// base-files packages with apt-get download (cached by version under
// <Out>/debs), unpacks them with dpkg -x and returns initramfs entries for
// the daemon and what it needs, kept under <Out>/hvkvp.
func KVPDaemonEntries(ctx context.Context, cfg Config) ([]Entry, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	pkgs := []string{"hyperv-daemons", "libc6", "base-files"}
	versions := map[string]string{}
	parts := []string{"hvkvp-v1"}
	for _, p := range pkgs {
		out, err := step{name: "apt-cache show " + p, timeout: cfg.StepTimeout}.
			run(ctx, "apt-cache", "show", "--no-all-versions", p)
		if err != nil {
			return nil, err
		}
		v := field(out, "Version")
		if v == "" {
			return nil, fmt.Errorf("apt-cache show %s: no Version", p)
		}
		versions[p] = v
		parts = append(parts, p, v)
	}
	dir := filepath.Join(cfg.Out, "hvkvp")
	rebuilt, err := Cached(dir, KeyOf(parts...), func(tmp string) error {
		for _, p := range pkgs {
			deb, err := kernelDeb(ctx, cfg, p, versions[p])
			if err != nil {
				return err
			}
			scratch, err := os.MkdirTemp(cfg.Out, "unpack-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(scratch)
			if _, err := (step{name: "dpkg -x " + p, timeout: cfg.StepTimeout}).run(ctx, "dpkg", "-x", deb, scratch); err != nil {
				return err
			}
			for _, f := range kvpFiles {
				if f.pkg != p {
					continue
				}
				dst := filepath.Join(tmp, filepath.FromSlash(f.to))
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					return err
				}
				if err := copyFile(filepath.Join(scratch, filepath.FromSlash(f.from)), dst, 0o755); err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hv_kvp_daemon: %w", err)
	}
	cfg.Log.Info("hv_kvp_daemon ready", "dir", dir, "versions", versions, "rebuilt", rebuilt)
	entries := []Entry{Dir("var"), Dir("var/lib")}
	for _, f := range kvpFiles {
		mode := os.FileMode(0o755)
		if f.to == "etc/os-release" {
			mode = 0o644
		}
		entries = append(entries, HostFile(f.to, mode, filepath.Join(dir, filepath.FromSlash(f.to))))
	}
	return entries, nil
}

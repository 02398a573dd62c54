package images

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/vmmdev/vmm/images/moddep"
)

// AgentPackage is the guest agent's package, built as the guest's /init.
const AgentPackage = "./images/agent"

// Agent builds the guest agent into <Out>/bin/agent, rebuilt when any source
// it depends on changes. It returns the binary's path.
func Agent(ctx context.Context, cfg Config) (string, error) {
	return GoBinary(ctx, cfg, AgentPackage, "agent")
}

// GoBinary builds pkg as a static binary <Out>/bin/<name>, cached by
// SourceKey(pkg). Use it for every binary that goes into an image (the
// agent, the outer init, vmm itself).
func GoBinary(ctx context.Context, cfg Config, pkg, name string) (string, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return "", err
	}
	src, err := SourceKey(ctx, pkg)
	if err != nil {
		return "", err
	}
	// The tag names BuildGo's flags: changing them must change the key.
	key := KeyOf("gobuild-v2 static trimpath buildvcs=false -s -w", src)
	out := filepath.Join(cfg.Out, "bin", name)
	rebuilt, err := Cached(out, key, func(tmp string) error { return BuildGo(ctx, pkg, tmp) })
	if err != nil {
		return "", err
	}
	cfg.Log.Info("binary ready", "package", pkg, "path", out, "rebuilt", rebuilt)
	return out, nil
}

// BaseEntries are what every initramfs of ours needs besides its init: the
// mount points the init mounts on and /dev/console, which the kernel opens
// as init's stdio before devtmpfs can be mounted.
func BaseEntries() []Entry {
	return []Entry{
		Dir("dev"), Dir("proc"), Dir("sys"), Dir("tmp"), Dir("run"), Dir("etc"),
		CharDev("dev/console", 0o600, 5, 1),
		CharDev("dev/null", 0o666, 1, 3),
	}
}

// ModuleEntries returns initramfs entries for the named modules and their
// dependencies at lib/modules/<version>/..., plus a modules.dep listing
// exactly them, so modload.LoadAll in the guest loads precisely these.
func ModuleEntries(k *KernelArtifacts, names ...string) ([]Entry, error) {
	src := k.ModulesDir()
	raw, err := os.ReadFile(filepath.Join(src, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("module entries: %w", err)
	}
	all, err := moddep.Parse(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("module entries: %w", err)
	}
	order, err := all.Closure(names...)
	if err != nil {
		return nil, fmt.Errorf("module entries: %w", err)
	}
	dst := path.Join("lib", "modules", k.Version)
	sub := moddep.Deps{}
	var entries []Entry
	for _, rel := range order {
		sub[rel] = all[rel]
		entries = append(entries, HostFile(path.Join(dst, rel), 0o644, filepath.Join(src, filepath.FromSlash(rel))))
	}
	var buf bytes.Buffer
	if err := sub.Write(&buf); err != nil {
		return nil, err
	}
	entries = append(entries, File(path.Join(dst, "modules.dep"), 0o644, buf.Bytes()))
	return entries, nil
}

// GuestInitramfs builds <Out>/guest.cpio.gz: /init is the guest agent, plus
// cfg.GuestModules from k and Debian's hv_kvp_daemon (KVPDaemonEntries). Rebuilt when the agent binary, the modules or
// the layout change; returns its path.
func GuestInitramfs(ctx context.Context, cfg Config, k *KernelArtifacts) (string, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return "", err
	}
	agent, err := Agent(ctx, cfg)
	if err != nil {
		return "", err
	}
	entries := append(BaseEntries(), HostFile("init", 0o755, agent))
	mods, err := ModuleEntries(k, cfg.GuestModules...)
	if err != nil {
		return "", err
	}
	entries = append(entries, mods...)
	kvp, err := KVPDaemonEntries(ctx, cfg)
	if err != nil {
		return "", err
	}
	entries = append(entries, kvp...)
	key, err := EntriesKey("guest-v1", entries)
	if err != nil {
		return "", err
	}
	out := filepath.Join(cfg.Out, "guest.cpio.gz")
	rebuilt, err := Cached(out, key, func(tmp string) error {
		return WriteInitramfs(tmp, entries)
	})
	if err != nil {
		return "", err
	}
	cfg.Log.Info("guest initramfs ready", "path", out, "rebuilt", rebuilt)
	return out, nil
}

// EntriesKey hashes an initramfs's full content (paths, modes, data and the
// content of host files) with a layout tag, as a cache key for it.
func EntriesKey(tag string, entries []Entry) (string, error) {
	parts := []string{tag}
	for _, e := range entries {
		content := string(e.Data)
		if e.HostPath != "" {
			sum, err := hashFile(e.HostPath)
			if err != nil {
				return "", fmt.Errorf("key %s: %w", e.Path, err)
			}
			content = sum
		}
		parts = append(parts, e.Path, e.Mode.String(), fmt.Sprint(e.Major, e.Minor), content)
	}
	return KeyOf(parts...), nil
}

//go:build linux

// Package modload loads kernel modules from an initramfs at boot, in the
// order modules.dep requires, with finit_module(2). It is what the outer init
// and the guest agent use instead of busybox insmod/modprobe.
package modload

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/images/moddep"
)

// Dir returns /lib/modules/<release> for the running kernel.
func Dir() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:])), nil
}

// LoadFile loads one module file with the given parameter string
// ("key=value key2=value2"). A module that is already loaded is not an error.
func LoadFile(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), params, 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("finit_module %s: %w", path, err)
	}
	return nil
}

// Load loads the named modules (names or paths as in moddep.Deps.Lookup) and
// their dependencies from dir, which holds modules.dep. params maps a module
// name (moddep.Name form) to its parameters. It returns the paths loaded, in
// order; it stops at the first failure because later modules may need it.
func Load(dir string, params map[string]string, names ...string) ([]string, error) {
	deps, err := readDeps(dir)
	if err != nil {
		return nil, err
	}
	order, err := deps.Closure(names...)
	if err != nil {
		return nil, fmt.Errorf("resolve modules: %w", err)
	}
	return loadOrder(dir, order, params, deps, LoadFile)
}

// LoadAll loads every module listed in dir/modules.dep. Image builders put
// exactly the modules a machine needs into its initramfs, so "all" is the
// natural request at boot.
func LoadAll(dir string, params map[string]string) ([]string, error) {
	deps, err := readDeps(dir)
	if err != nil {
		return nil, err
	}
	order, err := deps.All()
	if err != nil {
		return nil, fmt.Errorf("resolve modules: %w", err)
	}
	return loadOrder(dir, order, params, deps, LoadFile)
}

func readDeps(dir string) (moddep.Deps, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("open modules.dep: %w", err)
	}
	defer f.Close()
	d, err := moddep.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return d, nil
}

// loadOrder loads the modules in order. A module whose init fails with
// ENODEV found no hardware it drives on this machine (hv_vmbus outside
// Hyper-V, or without a VMBus device): it and the modules that depend on
// it are skipped, not an error, so one initramfs serves every machine.
func loadOrder(dir string, order []string, params map[string]string, deps moddep.Deps,
	load func(path, params string) error) ([]string, error) {
	loaded := make([]string, 0, len(order))
	absent := map[string]bool{}
	for _, rel := range order {
		if slices.ContainsFunc(deps[rel], func(d string) bool { return absent[d] }) {
			absent[rel] = true
			continue
		}
		err := load(filepath.Join(dir, rel), params[moddep.Name(rel)])
		if errors.Is(err, unix.ENODEV) {
			absent[rel] = true
			continue
		}
		if err != nil {
			return loaded, err
		}
		loaded = append(loaded, rel)
	}
	return loaded, nil
}

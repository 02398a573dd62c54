package images

import (
	"bytes"
	"debug/elf"
	"fmt"
	"strings"
)

// modinfo is what a module's .modinfo section says about it.
type modinfo struct {
	Name     string
	Depends  []string // module names, as the kernel spells them
	Vermagic string
}

// readModinfo extracts the .modinfo section of a module image. Debian's
// package ships no modules.dep (depmod writes it at install time), so the
// dependencies come from here, as depmod itself gets them.
func readModinfo(image []byte) (modinfo, error) {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return modinfo{}, fmt.Errorf("module ELF: %w", err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return modinfo{}, fmt.Errorf("module ELF: no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return modinfo{}, fmt.Errorf("module ELF: .modinfo: %w", err)
	}
	return parseModinfo(data), nil
}

// parseModinfo parses NUL-separated key=value strings; unknown keys and
// malformed strings are skipped.
func parseModinfo(data []byte) modinfo {
	var mi modinfo
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			mi.Name = v
		case "vermagic":
			mi.Vermagic = v
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					mi.Depends = append(mi.Depends, d)
				}
			}
		}
	}
	return mi
}

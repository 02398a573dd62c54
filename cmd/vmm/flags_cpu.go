package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/vmmdev/vmm/vmm"
	"github.com/vmmdev/vmm/vmm/cpumodel"
)

// cpuFlag is --cpu SPEC (issue 18).
type cpuFlag struct{ spec string }

func registerCPUFlag(fs *flag.FlagSet) *cpuFlag {
	c := &cpuFlag{}
	fs.StringVar(&c.spec, "cpu", cpumodel.Host, "the CPU the guest sees: `SPEC` is host or a model ("+
		strings.Join(cpumodel.ModelNames(), ", ")+"), then any of +FEATURE, -FEATURE (Linux /proc/cpuinfo or QEMU "+
		"names: -x2apic, +pcid, -avx512f) and vendor=STRING (12 characters), comma-separated")
	return c
}

// apply parses --cpu into cfg; a bad spec is a usage error. Whether the
// host offers what it adds is known only once KVM is open (vmm.New).
func (c *cpuFlag) apply(cfg *vmm.Config, stderr io.Writer) int {
	s, err := cpumodel.Parse(c.spec)
	if err != nil {
		fmt.Fprintf(stderr, "vmm run: --cpu: %v\n", err)
		return vmm.ExitUsage
	}
	cfg.CPU = s
	return ok
}

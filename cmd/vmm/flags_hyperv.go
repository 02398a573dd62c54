package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/vmmdev/vmm/devices/vmbus/ic"
	"github.com/vmmdev/vmm/vmm"
	"github.com/vmmdev/vmm/vmm/hyperv"
)

// hypervFlags are --hyperv and --hyperv-trace (issue 5), and --vmbus and
// its integration services' options (issue 14).
type hypervFlags struct {
	list, trace      string
	traceFile        *os.File
	vmbus            bool
	shutdownTimeout  time.Duration
	heartbeatTimeout time.Duration
	kvp              kvpList
}

// kvpList is the repeatable --kvp KEY=VALUE.
type kvpList []ic.KV

func (l *kvpList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, kv := range *l {
		s[i] = kv.Key + "=" + kv.Value
	}
	return strings.Join(s, " ")
}

func (l *kvpList) Set(v string) error {
	key, value, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("%q is not KEY=VALUE", v)
	}
	kv := ic.KV{Key: key, Value: value}
	if err := ic.CheckKV(kv); err != nil {
		return err
	}
	*l = append(*l, kv)
	return nil
}

func registerHyperVFlags(fs *flag.FlagSet) *hypervFlags {
	h := &hypervFlags{}
	fs.StringVar(&h.list, "hyperv", "", "Hyper-V enlightenments, emulated by vmm: a comma-separated `LIST` of "+
		"relaxed, vpindex, runtime, time, frequencies, crash, reset, synic, stimer, stimer-direct, tlbflush, ipi, "+
		"vapic (needs KVM's in-kernel Hyper-V; vapic=auto: only where the host has it), "+
		"spinlocks=N, vendor-id=STR, kvm-signature (keep KVM's leaves at 0x40000100), tsc-page=off (time without the "+
		"reference TSC page), kernel-timers (the synthetic timers and reference clock in KVM's Hyper-V where the "+
		"host has it, else in vmm), or the presets all and windows (docs/windows.md)")
	fs.StringVar(&h.trace, "hyperv-trace", "", "write every synthetic MSR access and hypercall as a JSON line to `FILE`")
	fs.BoolVar(&h.vmbus, "vmbus", false, "offer VMBus with the heartbeat, time sync and shutdown integration services "+
		"and KVP (needs --hyperv with synic; stimer-direct recommended)")
	fs.DurationVar(&h.shutdownTimeout, "shutdown-timeout", vmm.DefaultShutdownTimeout, "with --vmbus: on the first "+
		"SIGINT/SIGTERM, ask a guest with the shutdown channel open to power off and wait this long before the hard "+
		"stop (0: stop at once)")
	fs.DurationVar(&h.heartbeatTimeout, "heartbeat-timeout", 0, "with --vmbus: end the run with exit 10 when the "+
		"guest, after its first heartbeat, answers none for this long (0: never; at least 3s)")
	fs.Var(&h.kvp, "kvp", "with --vmbus: push `KEY=VALUE` to the guest's external KVP pool (repeatable)")
	return h
}

// apply parses --hyperv into cfg; a bad list is a usage error.
func (h *hypervFlags) apply(cfg *vmm.Config, stderr io.Writer) int {
	f, err := hyperv.ParseFeatures(h.list)
	if err != nil {
		fmt.Fprintf(stderr, "vmm run: --hyperv: %v\n", err)
		return vmm.ExitUsage
	}
	if h.trace != "" && !f.Enabled() {
		fmt.Fprintln(stderr, "vmm run: --hyperv-trace needs --hyperv")
		return vmm.ExitUsage
	}
	if h.vmbus && !f.SynIC {
		fmt.Fprintln(stderr, "vmm run: --vmbus needs --hyperv with synic and vpindex")
		return vmm.ExitUsage
	}
	cfg.HyperV = f
	cfg.VMBus = h.vmbus
	cfg.ShutdownTimeout, cfg.HeartbeatTimeout, cfg.KVP = h.shutdownTimeout, h.heartbeatTimeout, h.kvp
	return ok
}

// open creates the trace file.
func (h *hypervFlags) open(cfg *vmm.Config, stderr io.Writer) int {
	if h.trace == "" {
		return ok
	}
	f, err := os.OpenFile(h.trace, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		fmt.Fprintf(stderr, "vmm run: --hyperv-trace: %v\n", err)
		return vmm.ExitError
	}
	h.traceFile = f
	cfg.HyperVTrace = f
	return ok
}

// close closes the trace file; the run's summary has flushed it.
func (h *hypervFlags) close() {
	if h.traceFile != nil {
		h.traceFile.Close()
	}
}

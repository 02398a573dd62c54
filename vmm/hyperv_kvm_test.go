package vmm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/boot"
	"github.com/vmmdev/vmm/internal/kvmtest"
	"github.com/vmmdev/vmm/vmm/hyperv"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// The Hyper-V guests are assembled from testdata/hyperv*.s with GNU as:
//
//	as --64 -o x.o hyperv64.s && ld -Ttext=0x100000 --oformat binary -o hyperv64.bin x.o
//	as --32 -o x.o hyperv32.s && ld -m elf_i386 -Ttext=0x100000 --oformat binary -o hyperv32.bin x.o
//
// They store what they saw at 0x200000 and end through the debug-exit port.

type hvRun struct {
	res   Result
	out   []byte // 256 bytes at 0x200000
	trace []hyperv.TraceRecord
	log   *bytes.Buffer // vmm's debug log
}

func runHyperVGuest(t *testing.T, bin string, mode boot.Mode, features string) hvRun {
	t.Helper()
	kvmtest.Require(t)
	code, err := os.ReadFile(bin)
	require.NoError(t, err)
	f, err := hyperv.ParseFeatures(features)
	require.NoError(t, err)
	var trace bytes.Buffer
	cfg := Config{Program: &Program{Addr: 0x100000, Code: code,
		Entry: boot.Entry{Mode: mode, IP: 0x100000, RSP: 0x80000}},
		CPUs: 1, Memory: testMemory, Timeout: 60 * time.Second, HyperV: f, HyperVTrace: &trace}
	var log bytes.Buffer
	m, err := New(cfg, slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	require.NoError(t, err)
	defer m.Close()
	res := m.Run(context.Background())
	out := make([]byte, 256)
	_, err = m.Memory().ReadAt(out, 0x200000)
	require.NoError(t, err)
	var recs []hyperv.TraceRecord
	for _, line := range bytes.Split(bytes.TrimSpace(trace.Bytes()), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r hyperv.TraceRecord
		require.NoError(t, json.Unmarshal(line, &r))
		recs = append(recs, r)
	}
	return hvRun{res: res, out: out, trace: recs, log: &log}
}

func TestKVMHyperV64BitGuest(t *testing.T) {
	r := runHyperVGuest(t, "testdata/hyperv64.bin", boot.Long64, "relaxed,vpindex,time,frequencies,tlbflush,ipi")
	require.Equal(t, StopDebugExit, r.res.Reason.Kind, r.res.Reason.String())
	require.Equal(t, 33, r.res.Reason.ExitCode())
	le := binary.LittleEndian
	u32 := func(off int) uint32 { return le.Uint32(r.out[off:]) }
	u64 := func(off int) uint64 { return le.Uint64(r.out[off:]) }
	require.Equal(t, uint32(0x40000006), u32(0), "max leaf")
	require.Equal(t, "Microsoft Hv", string(r.out[4:16]))
	require.Equal(t, uint32(1<<1|1<<5|1<<6|1<<9|1<<11), u32(16), "0x40000003 EAX")
	require.Equal(t, uint32(1<<8), u32(20), "0x40000003 EDX")
	require.Equal(t, uint32(1<<2|1<<5|1<<9|1<<10|1<<11), u32(24), "0x40000004 EAX")
	require.Equal(t, uint32(0xffffffff), u32(28), "spinlocks")
	require.Equal(t, uint32(0), u32(32), "VP index")
	require.Greater(t, uint64(u32(40))<<32|uint64(u32(36)), uint64(10_000_000), "TSC frequency in Hz")
	// The hypercalls returned to their callers with TLFS statuses, so RIP
	// is right when left as KVM has it at the port exit.
	require.Equal(t, uint64(hyperv.StatusSuccess), u64(48), "HvNotifyLongSpinWait")
	require.Equal(t, uint64(hyperv.StatusInvalidHypercallCode), u64(56), "unknown code")
	require.Equal(t, uint64(hyperv.StatusSuccess), u64(64), "IPI to nobody")
	require.Equal(t, uint64(hyperv.StatusSuccess), u64(72), "flush all processors")
	require.Equal(t, uint32(4), u32(120), "#GP count")
	// 500 rounds of page, MSR, page: in order and never backwards.
	require.Zero(t, u64(80), "violations; last page %d msr %d page %d", u64(88), u64(96), u64(104))
	require.NotZero(t, u64(96), "the reference counter moved")
	require.Equal(t, uint32(1), u32(112), "TSC page sequence")

	counts := map[string]int{}
	for _, rec := range r.trace {
		counts[rec.Kind+" "+rec.Name]++
	}
	require.Equal(t, 500, counts["rdmsr TIME_REF_COUNT"])
	require.Equal(t, 1, counts["hypercall HvNotifyLongSpinWait"])
	require.Equal(t, 1, counts["hypercall HvFlushVirtualAddressSpace"])
	require.Equal(t, 1, counts["rdmsr SCONTROL"])
	sum, ok := r.res.HyperV.(hyperv.Summary)
	require.True(t, ok)
	require.Equal(t, "0x300000", sum.HypercallPage)
	require.Equal(t, "0x301000", sum.TSCPage)
	require.Equal(t, hyperv.MSRCount{Reads: 1, GP: 1}, sum.MSRs["SCONTROL"])
}

func TestKVMHyperV32BitGuestAndCrash(t *testing.T) {
	r := runHyperVGuest(t, "testdata/hyperv32.bin", boot.Protected32, "vpindex,tlbflush,ipi,crash")
	require.Equal(t, StopPanic, r.res.Reason.Kind, r.res.Reason.String())
	require.Equal(t, ExitPanic, r.res.Reason.ExitCode())
	require.Equal(t, "hyperv", r.res.Reason.Source)
	require.Contains(t, r.res.Reason.Detail, "P0=0x11 P1=0x12 P2=0x13 P3=0x14 P4=0x15")
	le := binary.LittleEndian
	u32 := func(off int) uint32 { return le.Uint32(r.out[off:]) }
	require.Equal(t, uint32(0x31237648), u32(0), "Hv#1")
	require.Equal(t, [2]uint32{hyperv.StatusInvalidHypercallCode, 0}, [2]uint32{u32(8), u32(12)}, "EDX:EAX")
	require.Equal(t, [2]uint32{hyperv.StatusSuccess, 3}, [2]uint32{u32(16), u32(20)}, "3 reps completed")
	require.Equal(t, [2]uint32{hyperv.StatusSuccess, 0}, [2]uint32{u32(24), u32(28)}, "IPI")
	sum := r.res.HyperV.(hyperv.Summary)
	require.Equal(t, []string{"0x11", "0x12", "0x13", "0x14", "0x15"}, sum.Crash)
	require.Equal(t, uint64(1), sum.Hypercalls["HvFlushVirtualAddressList"].Calls)
}

func TestKVMHyperVResetMSR(t *testing.T) {
	kvmtest.Require(t)
	code := []byte{
		0xc7, 0x06, 0x34, 0x00, 0x22, 0x7c, // mov word [0x34], 0x7c22 (IVT #GP: handler below)
		0xc7, 0x06, 0x36, 0x00, 0x00, 0x00, // mov word [0x36], 0
		0x66, 0xb9, 0x03, 0x00, 0x00, 0x40, // mov ecx, 0x40000003 (RESET)
		0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
		0x66, 0x31, 0xd2, // xor edx, edx
		0x0f, 0x30, // wrmsr
		0xb0, 0x7f, 0xe6, 0xf4, 0xf4, // mov al, 0x7f; out 0xf4, al; hlt (not reached)
		// 0x7c22: #GP handler
		0xb0, 0x22, 0xe6, 0xf4, 0xf4, // mov al, 0x22; out 0xf4, al; hlt
	}
	require.Equal(t, 0x22, len(code)-5, "handler offset")
	f, err := hyperv.ParseFeatures("reset")
	require.NoError(t, err)
	r := runGuest(t, Config{Program: realModeProgram(code), HyperV: f})
	require.Equal(t, StopReset, r.res.Reason.Kind, r.res.Reason.String())
	require.Equal(t, "hyperv", r.res.Reason.Source)

	// Without the reset switch the MSR is not there: #GP.
	f, err = hyperv.ParseFeatures("relaxed")
	require.NoError(t, err)
	r = runGuest(t, Config{Program: realModeProgram(code), HyperV: f})
	require.Equal(t, StopDebugExit, r.res.Reason.Kind, r.res.Reason.String())
	require.Equal(t, 0x45, r.res.Reason.ExitCode(), "the #GP handler ran")
}

// TestKVMHyperVSynICTimers runs synthetic timers on the host's KVM: three
// periodic expiry messages through SINT2, three periodic direct-mode
// interrupts, then two one-shot messages (1 ms ahead of TIME_REF_COUNT, then
// in the past). With auto-EOI on SINT2 the guest never EOIs the message
// interrupts, so on a host whose LAPIC keeps the vector in service the
// second one arrives only if vmm (or KVM) clears the in-service bit for it.
// Each runs with vmm's timers and with kernel-timers (KVM's, where the host
// has them; vmm's otherwise).
func TestKVMHyperVSynICTimers(t *testing.T) {
	sys := kvmtest.Require(t)
	synic2, err := sys.CheckExtension(kvm.CapHyperVSynIC2)
	require.NoError(t, err)
	kernelOK := true
	for _, c := range []kvm.Cap{kvm.CapHyperV, kvm.CapHyperVSynIC2, kvm.CapHyperVTime} {
		n, err := sys.CheckExtension(c)
		require.NoError(t, err)
		kernelOK = kernelOK && n > 0
	}
	for _, kernel := range []bool{false, true} {
		for _, autoEOI := range []bool{false, true} {
			name := "eoi"
			if autoEOI {
				name = "auto-eoi"
			}
			features := "vpindex,time,synic,stimer,stimer-direct"
			if kernel {
				name = "kernel-timers/" + name
				features += ",kernel-timers"
			}
			t.Run(name, func(t *testing.T) {
				code, err := os.ReadFile("testdata/hypervirq.bin")
				require.NoError(t, err)
				if autoEOI {
					code[8] = 1 // the program's aeoi flag
				}
				bin := filepath.Join(t.TempDir(), "irq.bin")
				require.NoError(t, os.WriteFile(bin, code, 0o644))
				r := runHyperVGuest(t, bin, boot.Long64, features)
				require.Equal(t, StopDebugExit, r.res.Reason.Kind, "%s\nguest's counters: %x\nsummary: %+v\nlog:\n%s",
					r.res.Reason, r.out[:48], r.res.HyperV, r.log)
				checkSynICTimers(t, r, autoEOI, kernel && kernelOK, synic2 > 0)
			})
		}
	}
}

// checkSynICTimers checks one TestKVMHyperVSynICTimers run; kernel says
// KVM's timers ran.
func checkSynICTimers(t *testing.T, r hvRun, autoEOI, kernel, synic2 bool) {
	t.Helper()
	le := binary.LittleEndian
	// Periodic timers: the guest halts until it has counted three of each
	// (so reaching the debug exit proves delivery); more may land between
	// its last count and its cli on a busy host.
	require.GreaterOrEqual(t, le.Uint32(r.out[0:]), uint32(3+2), "message interrupts")
	require.GreaterOrEqual(t, le.Uint32(r.out[4:]), uint32(3), "direct interrupts")
	require.Equal(t, uint32(2), le.Uint32(r.out[12:]), "one-shot messages")
	require.Equal(t, uint32(0x20000), le.Uint32(r.out[40:]), "the expired one-shot's config: enable cleared")
	// The last message: stimer2's one-shot in the past.
	require.Equal(t, uint32(0x80000010), le.Uint32(r.out[16:]), "HVMSG_TIMER_EXPIRED")
	require.Equal(t, uint32(2), le.Uint32(r.out[20:]), "timer 2")
	exp, delivered := le.Uint64(r.out[24:]), le.Uint64(r.out[32:])
	require.Equal(t, uint64(1), exp, "expiration time: the count")
	require.GreaterOrEqual(t, delivered, uint64(30000), "delivered after three 1 ms periods")
	sum := r.res.HyperV.(hyperv.Summary)
	require.Len(t, sum.VPs, 1)
	vp := sum.VPs[0]
	require.True(t, vp.SynIC)
	require.Equal(t, "0x302000", vp.SIMP)
	if kernel {
		require.Equal(t, "kernel", sum.Timers)
		require.Contains(t, sum.Features, "kernel-timers")
		require.Contains(t, sum.NotCounted, "TIME_REF_COUNT")
		require.Empty(t, vp.Timers, "KVM's timers are out of vmm's sight")
		for _, rec := range r.trace {
			require.NotContains(t, rec.Name, "STIMER", "a timer MSR reached vmm")
			require.NotEqual(t, "TIME_REF_COUNT", rec.Name, "TIME_REF_COUNT reached vmm")
		}
		// The SynIC stays vmm's, mirrored to KVM's.
		require.Contains(t, vp.SINTs, "2:0x50"+map[bool]string{true: ":auto-eoi"}[autoEOI])
	} else {
		require.Equal(t, "userspace", sum.Timers)
		require.NotContains(t, sum.Features, "kernel-timers")
		require.Len(t, vp.Timers, 3)
		require.Equal(t, "message", vp.Timers[0].Mode)
		require.Equal(t, 2, vp.Timers[0].SINT)
		require.Equal(t, "direct", vp.Timers[1].Mode)
		require.Equal(t, uint8(0x51), vp.Timers[1].Vector)
		require.GreaterOrEqual(t, vp.Timers[1].Delivered, uint64(3))
		require.Equal(t, "message", vp.Timers[2].Mode)
		require.False(t, vp.Timers[2].Periodic)
		require.Equal(t, uint64(2), vp.Timers[2].Delivered)
	}
	if autoEOI {
		// Where KVM has a SynIC, its LAPIC does the auto-EOI and every
		// message interrupt counts as one left to it; else vmm clears the
		// in-service bits (how many it finds set depends on the host).
		require.Equal(t, synic2, vp.KernelAutoEOI)
		if vp.KernelAutoEOI && !kernel {
			require.GreaterOrEqual(t, vp.AutoEOIs, uint64(3))
		}
		t.Logf("auto-EOIs: %d, in KVM: %v", vp.AutoEOIs, vp.KernelAutoEOI)
	} else {
		require.Zero(t, vp.AutoEOIs)
		require.False(t, vp.KernelAutoEOI)
	}
}

// TestKVMHyperVAPICAccessMSRs runs testdata/hypervapic.s: with vapic, the
// EOI, ICR and TPR MSRs act on the in-kernel LAPIC (KVM serves them; vmm's
// filter passes them) and the VP assist page is vmm's. On a host whose KVM
// cannot serve them, vapic=auto leaves them out and a named vapic is
// refused. Without vapic the guest gets a #GP for each.
func TestKVMHyperVAPICAccessMSRs(t *testing.T) {
	sys := kvmtest.Require(t)
	n, err := sys.CheckExtension(kvm.CapHyperVVAPIC)
	require.NoError(t, err)
	kernel := n > 0
	le := binary.LittleEndian
	u32 := func(r hvRun, off int) uint32 { return le.Uint32(r.out[off:]) }
	u64 := func(r hvRun, off int) uint64 { return le.Uint64(r.out[off:]) }
	t.Logf("KVM_CAP_HYPERV_VAPIC: %d", n)

	r := runHyperVGuest(t, "testdata/hypervapic.bin", boot.Long64, "vpindex,vapic=auto")
	require.Equal(t, StopDebugExit, r.res.Reason.Kind, r.res.Reason.String())
	if kernel {
		require.NotZero(t, u32(r, 0)&(1<<4), "0x40000003 EAX APIC_ACCESS")
		require.NotZero(t, u32(r, 4)&(1<<3), "0x40000004 EAX APIC MSRs recommended")
		require.Equal(t, uint64(0x303001), u64(r, 8), "VP_ASSIST_PAGE")
		require.Zero(t, u64(r, 16), "assist page cleared on enable (apic_assist)")
		require.Zero(t, u64(r, 24), "assist page cleared on enable (end)")
		require.Equal(t, uint32(0x20), u32(r, 32), "TPR written through the MSR, read from the APIC page")
		require.Equal(t, uint32(0x30), u32(r, 36), "TPR written to the APIC page, read through the MSR")
		require.Zero(t, u32(r, 40), "TPR 0x70 held the vector 0x60 IPI off")
		require.Equal(t, uint32(1), u32(r, 44), "TPR 0 let it in")
		require.Equal(t, uint32(1), u32(r, 48)&1, "vector 0x60 in service in its handler")
		require.Zero(t, u32(r, 52)&1, "EOI through the MSR ended it")
		require.Equal(t, uint32(2), u32(r, 56), "the second IPI of the same vector got in")
		require.Zero(t, u32(r, 60), "#GP count")
		require.Equal(t, uint64(0x44060), u64(r, 64)&^(1<<12), "ICR reads back")
		require.Zero(t, u64(r, 72), "assist page off")
		counts := map[string]int{}
		for _, rec := range r.trace {
			counts[rec.Kind+" "+rec.Name]++
		}
		require.Equal(t, 2, counts["wrmsr VP_ASSIST_PAGE"])
		for _, name := range []string{"EOI", "ICR", "TPR"} {
			require.Zero(t, counts["wrmsr "+name]+counts["rdmsr "+name], "%s reached vmm, not KVM's LAPIC", name)
		}
		require.Contains(t, r.res.HyperV.(hyperv.Summary).Features, "vapic")
	} else {
		require.Zero(t, u32(r, 0)&(1<<4), "vapic=auto left out")
		require.Equal(t, uint32(3), u32(r, 60), "#GP count")
		f, err := hyperv.ParseFeatures("vpindex,vapic")
		require.NoError(t, err)
		_, err = New(Config{Program: realModeProgram([]byte{0xf4}), HyperV: f, CPUs: 1, Memory: testMemory}, nil)
		require.ErrorIs(t, err, hyperv.ErrNoKernelAPIC)
	}

	r = runHyperVGuest(t, "testdata/hypervapic.bin", boot.Long64, "vpindex")
	require.Equal(t, StopDebugExit, r.res.Reason.Kind, r.res.Reason.String())
	require.Zero(t, u32(r, 0)&(1<<4))
	require.Zero(t, u32(r, 4)&(1<<3))
	require.Equal(t, uint32(3), u32(r, 60), "EOI, ICR and TPR #GP without vapic")
}

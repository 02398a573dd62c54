// Package vmm is the machine: guest memory, vCPUs, the run loop and exit
// dispatch, and the assembly of a VM from a Config.
package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmmdev/vmm/devices/acpipm"
	"github.com/vmmdev/vmm/devices/bus"
	"github.com/vmmdev/vmm/devices/cmos"
	"github.com/vmmdev/vmm/devices/debugexit"
	"github.com/vmmdev/vmm/devices/i8042"
	"github.com/vmmdev/vmm/devices/pci"
	"github.com/vmmdev/vmm/devices/piix"
	"github.com/vmmdev/vmm/devices/pvpanic"
	"github.com/vmmdev/vmm/devices/serial"
	"github.com/vmmdev/vmm/devices/virtio/balloon"
	"github.com/vmmdev/vmm/layout"
	"github.com/vmmdev/vmm/vmm/conmatch"
	"github.com/vmmdev/vmm/vmm/kvm"
)

// Machine is one VM, built by New and started by Run. It runs once.
type Machine struct {
	cfg   Config
	seed  *os.File // the cloud-init seed (cloudinit.go), nil without one
	log   *slog.Logger
	sys   *kvm.System
	vm    *kvm.VM
	mem   *Memory
	pio   *bus.Bus
	mmio  *bus.Bus
	uart  *serial.UART
	vcpus []*vcpu
	latch *stopLatch
	disp  dispatcher
	ran   atomic.Bool

	consoleBytes atomic.Uint64
	firstOutput  atomic.Int64 // nanoseconds after Run started; 0 until the first console byte
	started      time.Time

	matcher   *conmatch.Matcher // --expect / --fail
	matchedAt atomic.Int64      // nanoseconds after Run started; 0 until a match
	inBytes   atomic.Uint64     // host console input handed to the UART
	// hypervSummary, when set (Hyper-V enabled), gives the Result's HyperV
	// summary, e.g. func() any { return partition.Summary() }; it runs after
	// every vCPU stopped.
	hypervSummary func() any
	// vmbus is the VMBus host when cfg.VMBus is on (vmbus.go).
	vmbus *vmbusMachine
	// hv is the Hyper-V partition when cfg.HyperV is on (hyperv.go).
	hv *hvMachine
	// pci is the PCI bus and its virtio devices (pci.go).
	pci *pciPlatform
	// boot is how the guest starts: direct or firmware (bootpath.go).
	boot bootPath
	// routes is the GSI routing table: PC routes and MSI-X irqfds (msiroute.go).
	routes *gsiRoutes
	// rss reads the peak RSS and vmm's own memory for the Result (rss.go).
	rss *rssProbe
	// guestPeak follows the guest's resident memory and vmm's own (rss.go).
	guestPeak residentPeak
	// fileRanges are vmm's clean file mappings (footprint.go).
	fileRanges [][2]uintptr
	// balloon is the virtio-balloon device, if any (pci.go).
	balloon *balloon.Device
	// rtc is the CMOS RTC; pm the PIIX4 PM function, if the platform has one.
	rtc *cmos.CMOS
	pm  *piix.PM
	// sleep is the S3 state when the platform offers S3 (sleep.go), facs
	// the FACS's guest address where the OS leaves its waking vector.
	sleep *sleeper
	facs  uint64
}

// Result is what a finished run reports.
type Result struct {
	Reason StopReason
	// Wall is the time from Run to the last vCPU stopping.
	Wall time.Duration
	// FirstOutput is the time from Run to the guest's first console byte (0 if none).
	FirstOutput time.Duration
	// Exits counts vCPU exits by kind, summed over vCPUs.
	Exits map[string]uint64
	// Unclaimed counts accesses no device claimed; UnclaimedPIO.Hot also
	// names the claimed ports used most.
	UnclaimedPIO, UnclaimedMMIO bus.Stats
	// PCIConfig counts the guest's PCI configuration accesses (nil: no
	// PCI bus).
	PCIConfig *pci.ConfigStats
	// Started is when Run started; StoppedAt when the stop reason was recorded.
	Started, StoppedAt time.Time
	// Match is the time from Run to the --expect/--fail match (0 if none).
	Match time.Duration
	// ConsoleOut and ConsoleIn count console bytes from and to the guest.
	ConsoleOut, ConsoleIn uint64
	// HyperV is the Hyper-V summary when the enlightenments are enabled.
	HyperV any
	// PeakRSS is the VMM process's peak resident memory, GuestResident
	// the guest RAM resident at the end and GuestResidentPeak the most
	// resident at once (more than GuestResident only when the balloon gave
	// memory back), all in bytes.
	PeakRSS, GuestResident, GuestResidentPeak uint64
	// Own is vmm's own memory at its most among the samples (rss.go;
	// zero if unknown).
	Own OwnMemory
	// Balloon holds the virtio-balloon's figures (nil without --balloon).
	Balloon *balloon.Stats
	// Sleep counts suspend-to-RAM cycles (nil where S3 is not offered).
	Sleep *SleepStats
}

// New builds a VM from cfg: it validates cfg, opens KVM, maps memory, creates
// the interrupt controllers and devices, loads the guest and creates vCPUs.
func New(cfg Config, log *slog.Logger) (*Machine, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Machine{cfg: cfg, log: log, latch: newStopLatch(),
		pio: bus.NewCounting("pio"), mmio: bus.New("mmio"), rss: openRSSProbe()}
	built := false
	defer func() {
		if !built {
			m.Close()
		}
	}()

	bp, err := newBootPath(cfg)
	if err != nil {
		return nil, err
	}
	m.boot = bp
	if err := m.attachCloudInit(); err != nil {
		return nil, err
	}

	if m.sys, err = OpenKVM(cfg.devKVM()); err != nil {
		return nil, err
	}
	if max, err := MaxVCPUs(m.sys); err == nil && cfg.CPUs > max {
		return nil, invalid("--cpus: %d vCPUs; KVM on this host allows at most %d", cfg.CPUs, max)
	}
	if m.vm, err = m.sys.CreateVM(); err != nil {
		return nil, fmt.Errorf("create VM: %w", err)
	}
	if err := m.hypervForHost(); err != nil {
		return nil, err
	}
	if err := m.setupPlatform(); err != nil {
		return nil, err
	}
	if m.mem, err = NewMemory(cfg.Memory); err != nil {
		return nil, err
	}
	m.guestPeak.mem, m.guestPeak.rss = m.mem, m.rss
	if err := m.boot.mapMemory(m); err != nil {
		return nil, err
	}
	if err := m.setupDevices(); err != nil {
		return nil, err
	}
	entry, err := m.boot.load(m)
	if err != nil {
		return nil, err
	}
	if err := m.createVCPUs(entry); err != nil {
		return nil, err
	}
	if err := m.setupHyperV(); err != nil {
		return nil, err
	}
	if err := m.setupHyperVTestdev(); err != nil {
		return nil, err
	}
	if err := m.setupVMBus(); err != nil {
		return nil, err
	}
	m.disp = dispatcher{pio: m.pio, mmio: m.mmio}
	if m.hv != nil {
		m.disp.msr = m.hv.part
		m.disp.hypercall = m.hv.hypercall
	}
	built = true
	m.fileRanges = fileMappings()
	return m, nil
}

// OpenKVM opens the KVM device and checks the capabilities vmm cannot work
// without. A device that cannot be opened (kvm.Open also checks the API
// version) is a *KVMError: one line saying what is wrong and what to do.
func OpenKVM(path string) (*kvm.System, error) {
	sys, err := openKVM(path)
	if err != nil {
		return nil, err
	}
	for _, c := range []kvm.Cap{kvm.CapIRQChip, kvm.CapUserMemory, kvm.CapPIT2, kvm.CapImmediateExit} {
		if n, err := sys.CheckExtension(c); err != nil || n == 0 {
			sys.Close()
			return nil, fmt.Errorf("KVM at %s lacks %v, which vmm needs", path, c)
		}
	}
	return sys, nil
}

// MaxVCPUs is the number of vCPUs KVM allows in one VM.
func MaxVCPUs(sys *kvm.System) (int, error) {
	n, err := sys.CheckExtension(kvm.CapMaxVCPUs)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		// KVM's API: without KVM_CAP_MAX_VCPUS, KVM_CAP_NR_VCPUS is the limit.
		if n, err = sys.CheckExtension(kvm.CapNrVCPUs); err != nil {
			return 0, err
		}
	}
	if n == 0 {
		n = 4
	}
	return n, nil
}

func (m *Machine) setupPlatform() error {
	// Intel needs the TSS and identity map pages placed before the first
	// vCPU runs; they sit in the MMIO hole, away from RAM.
	if err := m.vm.SetIdentityMapAddr(layout.KVMIdentityAddr); err != nil {
		return fmt.Errorf("set identity map address: %w", err)
	}
	if err := m.vm.SetTSSAddr(layout.KVMTSSAddr); err != nil {
		return fmt.Errorf("set TSS address: %w", err)
	}
	if err := m.vm.CreateIRQChip(); err != nil {
		return fmt.Errorf("create in-kernel irqchip: %w", err)
	}
	routes, err := newGSIRoutes(m.vm, !m.cfg.signalMSI && irqfdCapable(m.sys), m.log)
	if err != nil {
		return err
	}
	m.routes = routes
	// The speaker-dummy flag lets KVM answer port 0x61, which Linux reads
	// while calibrating against the PIT.
	if err := m.vm.CreatePIT2(kvm.PITSpeakerDummy); err != nil {
		return fmt.Errorf("create in-kernel PIT: %w", err)
	}
	return nil
}

// irqLine drives one in-kernel PIC/IOAPIC input.
type irqLine struct {
	vm  *kvm.VM
	irq uint32
	log *slog.Logger
}

func (l irqLine) SetLevel(high bool) {
	if err := l.vm.IRQLine(l.irq, high); err != nil {
		l.log.Warn("set interrupt line", "irq", l.irq, "err", err)
	}
}

func (m *Machine) setupDevices() error {
	m.uart = serial.New(irqLine{m.vm, layout.IRQCOM1, m.log}, m.consoleWriter())
	m.matcher = conmatch.New(m.cfg.Expect, m.cfg.Fail, m.onMatch)

	stopWith := func(kind StopKind, source, detail string) func() {
		return func() { m.latch.Stop(StopReason{Kind: kind, Source: source, Detail: detail}) }
	}
	regs := []struct {
		base, size uint64
		dev        bus.Device
		name       string
	}{
		{layout.PortCOM1, serial.Size, m.uart, "com1"},
		{layout.PortI8042, i8042.Size, i8042.New(stopWith(StopReset, "i8042", "keyboard controller reset")), "i8042"},
		{layout.PortCMOS, cmos.Size, m.newCMOS(), "cmos"},
		{layout.PortDebugExit, debugexit.Size, debugexit.New(func(v uint32) {
			m.latch.Stop(StopReason{Kind: StopDebugExit, Source: "debug-exit port", Value: v})
		}), "debug-exit"},
		{layout.PortSleepControl, acpipm.Size, acpipm.New(
			stopWith(StopPowerOff, "acpi", "S5 soft-off"),
			stopWith(StopReset, "acpi", "reset register")), "acpi-pm"},
		{layout.PortPVPanic, pvpanic.Size, pvpanic.New(
			stopWith(StopPanic, "pvpanic", "guest panicked"),
			func() { m.log.Info("guest loaded a crash kernel (pvpanic)") }), "pvpanic"},
	}
	for _, r := range regs {
		if err := m.pio.Register(r.base, r.size, r.dev, r.name); err != nil {
			return fmt.Errorf("register %s: %w", r.name, err)
		}
	}
	if err := m.setupPCI(); err != nil {
		return err
	}
	if err := m.setupTestdev(); err != nil {
		return err
	}
	if m.cfg.ConsoleIn != nil {
		go m.feedConsole(m.cfg.ConsoleIn)
	}
	return nil
}

// newCMOS is the CMOS/RTC, with what the boot path's guest reads there.
func (m *Machine) newCMOS() *cmos.CMOS {
	c := cmos.New(m.cfg.Memory, time.Now)
	m.boot.setupCMOS(c, m.cfg.CPUs)
	c.Connect(cmos.Interrupts{IRQ: irqLine{m.vm, layout.IRQRTC, m.log}.SetLevel, Alarm: m.rtcAlarm})
	m.rtc = c
	return c
}

// countingWriter notes when the guest's first console byte arrives.
type countingWriter struct {
	m   *Machine
	out io.Writer
}

func (w countingWriter) Write(p []byte) (int, error) {
	if w.m.consoleBytes.Add(uint64(len(p))) == uint64(len(p)) && !w.m.started.IsZero() {
		w.m.firstOutput.CompareAndSwap(0, int64(max(time.Since(w.m.started), 1)))
	}
	n, err := len(p), error(nil)
	if w.out != nil {
		n, err = w.out.Write(p)
	}
	// Matched after the write, so the matching line is in the console (and
	// its log) when the VM stops.
	_, _ = w.m.matcher.Write(p)
	return n, err
}

// feedConsole copies host input to the UART until the VM stops or input ends.
func (m *Machine) feedConsole(in io.Reader) {
	buf := make([]byte, 64)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			m.inBytes.Add(uint64(n))
			if !m.consoleInput(buf[:n]) {
				return
			}
		}
		if err != nil {
			return
		}
		select {
		case <-m.latch.Done():
			return
		default:
		}
	}
}

// Close releases the VM, its vCPUs and memory. Safe after a failed New.
func (m *Machine) Close() error {
	var errs []error
	// Devices first: their goroutines use guest memory and the VM.
	if m.rtc != nil {
		m.rtc.Close()
	}
	m.closePCI()
	errs = append(errs, m.vmbus.close())
	if m.seed != nil {
		errs = append(errs, m.seed.Close())
		m.seed = nil
	}
	if m.routes != nil {
		m.routes.close()
		m.routes = nil
	}
	if m.hv != nil {
		// Synthetic timer callbacks inject through the VM.
		errs = append(errs, m.hv.clock.Close())
	}
	for _, v := range m.vcpus {
		errs = append(errs, v.kvm.Close())
	}
	m.vcpus = nil
	if m.vm != nil {
		errs = append(errs, m.vm.Close())
		m.vm = nil
	}
	if m.mem != nil {
		errs = append(errs, m.mem.Close())
		m.mem = nil
	}
	if m.sys != nil {
		errs = append(errs, m.sys.Close())
		m.sys = nil
	}
	// The firmware image stays mapped until no slot can point at it.
	if m.boot != nil {
		m.boot.close()
	}
	errs = append(errs, m.rss.Close())
	m.rss = nil
	return errors.Join(errs...)
}

// Stop ends the VM with r (if it has no reason yet). Safe from any goroutine.
func (m *Machine) Stop(r StopReason) { m.latch.Stop(r) }

// Memory gives access to guest RAM (tests, tools).
func (m *Machine) Memory() *Memory { return m.mem }

// Run starts every vCPU and blocks until the VM stops: the guest powers off,
// resets, panics or exits, the timeout passes, ctx is cancelled, or the VMM
// fails. Every vCPU thread has returned when Run returns.
func (m *Machine) Run(ctx context.Context) Result {
	if !m.ran.CompareAndSwap(false, true) {
		return Result{Reason: StopReason{Kind: StopError, Source: "vmm", Err: errors.New("machine already ran")}}
	}
	m.started = time.Now()
	releaseStartup(m.fileRanges)
	m.guestPeak.sample()
	stopTrim := trimFilePages(m.fileRanges, func() { m.guestPeak.sample() })
	defer stopTrim()
	var wg sync.WaitGroup
	for _, v := range m.vcpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.runVCPU(v)
		}()
	}
	var timeout <-chan time.Time
	if m.cfg.Timeout > 0 {
		t := time.NewTimer(m.cfg.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	stopWatch := m.watchHalted()
	m.latch.wait(ctx, timeout, m.cfg.Timeout, m.gracefulShutdown())
	stopWatch()
	m.kickAll(&wg)
	res := Result{
		Reason:        m.latch.Reason(),
		Wall:          time.Since(m.started),
		FirstOutput:   time.Duration(m.firstOutput.Load()),
		Exits:         map[string]uint64{},
		UnclaimedPIO:  m.pio.Stats(),
		UnclaimedMMIO: m.mmio.Stats(),
		Started:       m.started,
		StoppedAt:     m.latch.At(),
		Match:         time.Duration(m.matchedAt.Load()),
		ConsoleOut:    m.consoleBytes.Load(),
		ConsoleIn:     m.inBytes.Load(),
		PeakRSS:       m.rss.peak(),
	}
	res.GuestResident, res.GuestResidentPeak = m.guestPeak.sample()
	res.Own = m.guestPeak.ownPeak()
	if m.balloon != nil {
		st := m.balloon.Stats()
		res.Balloon = &st
	}
	if m.pci != nil {
		st := m.pci.bus.ConfigStats()
		res.PCIConfig = &st
	}
	if m.sleep != nil {
		st := m.sleep.snapshot()
		res.Sleep = &st
	}
	if m.hypervSummary != nil {
		res.HyperV = m.hypervSummary()
	}
	for _, v := range m.vcpus {
		for k := range v.exits {
			if n := v.exits[k].Load(); n > 0 {
				res.Exits[ExitKind(k).String()] += n
			}
		}
	}
	return res
}

// kickAll forces every vCPU out of KVM_RUN and waits for their loops to end.
// immediate_exit covers a thread about to enter KVM_RUN; the signal covers one
// already inside. The kick repeats until all have returned, so a signal that
// lands just before a thread blocks cannot be lost.
func (m *Machine) kickAll(wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	for delay := time.Millisecond; ; delay = min(delay*2, 100*time.Millisecond) {
		for _, v := range m.vcpus {
			v.kick()
		}
		select {
		case <-done:
			return
		case <-time.After(delay):
		}
	}
}

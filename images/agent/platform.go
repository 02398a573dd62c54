package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Checks of the PC platform vmm presents: the PCI bus with its virtio
// functions, the virtio-rng and virtio-console devices, and a kernel log
// free of ACPI complaints.

// pciDevice is one function under /sys/bus/pci/devices.
type pciDevice struct {
	addr, id, driver string
	msiIRQs          int
}

func (e *env) pciDevices() ([]pciDevice, error) {
	const dir = "sys/bus/pci/devices"
	ents, err := fs.ReadDir(e.root, dir)
	if err != nil {
		return nil, fmt.Errorf("list PCI devices: %w", err)
	}
	var out []pciDevice
	for _, ent := range ents {
		d := pciDevice{addr: ent.Name()}
		p := path.Join(dir, d.addr)
		vendor, err1 := e.readTrimmed(p + "/vendor")
		device, err2 := e.readTrimmed(p + "/device")
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("PCI device %s: %w", d.addr, err)
		}
		d.id = strings.TrimPrefix(vendor, "0x") + ":" + strings.TrimPrefix(device, "0x")
		if target, err := fs.ReadLink(e.root, p+"/driver"); err == nil {
			d.driver = path.Base(target)
		}
		if irqs, err := fs.ReadDir(e.root, p+"/msi_irqs"); err == nil {
			d.msiIRQs = len(irqs)
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].addr < out[j].addr })
	return out, nil
}

// checkPCI passes when the i440FX host bridge is at 00:00.0 and every
// virtio function (vendor 1af4) is bound to virtio-pci and uses MSI-X
// vectors; vmm.pci_devices=N, if given, is the number of virtio functions.
func checkPCI(e *env) (bool, string) {
	devs, err := e.pciDevices()
	if err != nil {
		return false, err.Error()
	}
	var parts, problems []string
	virtio := 0
	bridge := false
	for _, d := range devs {
		parts = append(parts, fmt.Sprintf("%s %s %s msi=%d", strings.TrimPrefix(d.addr, "0000:"), d.id, d.driver, d.msiIRQs))
		switch {
		case d.addr == "0000:00:00.0" && d.id == "8086:1237":
			bridge = true
		case strings.HasPrefix(d.id, "1af4:"):
			virtio++
			if d.driver != "virtio-pci" {
				problems = append(problems, d.addr+" not bound to virtio-pci")
			}
			if d.msiIRQs == 0 {
				problems = append(problems, d.addr+" has no MSI-X vectors")
			}
		}
	}
	if !bridge {
		problems = append(problems, "no 8086:1237 host bridge at 00:00.0")
	}
	want := 1
	if s, ok := e.opts.params["vmm.pci_devices"]; ok {
		if _, err := fmt.Sscanf(s, "%d", &want); err != nil {
			problems = append(problems, fmt.Sprintf("bad vmm.pci_devices %q", s))
		}
	}
	if virtio < want {
		problems = append(problems, fmt.Sprintf("%d virtio functions, want %d", virtio, want))
	}
	detail := strings.Join(parts, "; ")
	if len(problems) > 0 {
		return false, strings.Join(problems, "; ") + " [" + detail + "]"
	}
	return true, detail
}

// rngTimeout bounds the wait for the device's first bytes.
const rngTimeout = 10 * time.Second

// checkRNG passes when virtio_rng is the current hardware RNG and
// /dev/hwrng yields bytes that are not all zero.
func checkRNG(e *env) (bool, string) {
	cur, err := e.readTrimmed("sys/class/misc/hw_random/rng_current")
	if err != nil {
		return false, fmt.Sprintf("read rng_current: %v", err)
	}
	if !strings.HasPrefix(cur, "virtio_rng") {
		return false, fmt.Sprintf("current hardware RNG is %q, not virtio_rng", cur)
	}
	f, err := e.root.Open("dev/hwrng")
	if err != nil {
		return false, fmt.Sprintf("open /dev/hwrng: %v", err)
	}
	buf := make([]byte, 64)
	got := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(f, buf)
		got <- err
	}()
	select {
	case err := <-got:
		f.Close()
		if err != nil {
			return false, fmt.Sprintf("read /dev/hwrng: %v", err)
		}
	case <-time.After(rngTimeout):
		// The reader stays blocked; the agent ends the machine soon anyway.
		return false, fmt.Sprintf("no bytes from /dev/hwrng within %v", rngTimeout)
	}
	if strings.Count(string(buf), "\x00") == len(buf) {
		return false, "64 zero bytes from /dev/hwrng"
	}
	return true, fmt.Sprintf("rng=%s read=%d bytes", cur, len(buf))
}

// checkConsole passes when hvc0 is an enabled kernel console and the
// agent's own output (fd 1) goes to it, so every report line travelled
// through virtio-console.
func checkConsole(e *env) (bool, string) {
	consoles, err := e.readTrimmed("proc/consoles")
	if err != nil {
		return false, fmt.Sprintf("read /proc/consoles: %v", err)
	}
	var hvc string
	for _, l := range strings.Split(consoles, "\n") {
		if strings.HasPrefix(l, "hvc0 ") {
			hvc = l
		}
	}
	if hvc == "" {
		return false, fmt.Sprintf("hvc0 is not a console: %q", consoles)
	}
	flags := ""
	if i, j := strings.IndexByte(hvc, '('), strings.IndexByte(hvc, ')'); i >= 0 && j > i {
		flags = hvc[i+1 : j]
	}
	if !strings.Contains(flags, "E") {
		return false, fmt.Sprintf("hvc0 console not enabled: %q", hvc)
	}
	out, err := fs.ReadLink(e.root, "proc/self/fd/1")
	if err != nil {
		return false, fmt.Sprintf("agent output: %v", err)
	}
	if out != "/dev/hvc0" {
		return false, fmt.Sprintf("agent output goes to %s, not /dev/hvc0", out)
	}
	return true, fmt.Sprintf("console %q, agent output on %s", strings.Join(strings.Fields(hvc), " "), out)
}

// acpiComplaint matches what Linux and ACPICA print when they dislike the
// firmware's tables or AML ("ACPI Error:", "ACPI BIOS Warning (bug):",
// "ACPI Exception:", "[Firmware Bug]: ... ACPI ...").
var acpiComplaint = regexp.MustCompile(`(?i)ACPI( BIOS)? (Error|Warning|Exception)|ACPI.*(Firmware Bug|FW_BUG|not reserved)|(Firmware Bug|Firmware Warn).*ACPI|AE_[A-Z_]+`)

// checkACPI passes when the kernel log has no ACPI error or warning.
func checkACPI(e *env) (bool, string) {
	lines, err := e.kernelLog()
	if err != nil {
		return false, fmt.Sprintf("kernel log: %v", err)
	}
	var bad []string
	acpi := 0
	for _, l := range lines {
		if strings.Contains(l, "ACPI") {
			acpi++
		}
		if acpiComplaint.MatchString(l) {
			bad = append(bad, l)
		}
	}
	if acpi == 0 {
		return false, "no ACPI lines in the kernel log: ACPI not in use"
	}
	if len(bad) > 0 {
		return false, fmt.Sprintf("%d complaint(s): %s", len(bad), strings.Join(bad, " | "))
	}
	return true, fmt.Sprintf("%d ACPI lines, no errors or warnings", acpi)
}

// acpiTableLine matches Linux's table list at boot, "ACPI: FACP
// 0x000000000FFE1234 000114 (v06 VMMDEV VMM ...)": signature and OEM ID.
var acpiTableLine = regexp.MustCompile(`ACPI: ([A-Z0-9]{4}) 0x[0-9A-F]+ [0-9A-F]+ \(v\d+ +([^\s)]+)`)

// defaultACPITables are the tables vmm builds for every PC guest.
const defaultACPITables = "RSDP,XSDT,FACP,DSDT,APIC,MCFG"

// checkACPITables passes when the kernel lists every table named in
// vmm.acpi_tables= (default defaultACPITables) with vmm's OEM ID: under
// firmware the tables travel through fw_cfg's table loader, and this shows
// the guest got vmm's tables, not the firmware's own.
func checkACPITables(e *env) (bool, string) {
	want := e.opts.params["vmm.acpi_tables"]
	if want == "" {
		want = defaultACPITables
	}
	lines, err := e.kernelLog()
	if err != nil {
		return false, fmt.Sprintf("kernel log: %v", err)
	}
	oem := map[string]string{}
	for _, l := range lines {
		if m := acpiTableLine.FindStringSubmatch(l); m != nil {
			oem[m[1]] = m[2]
		}
	}
	var missing []string
	for _, sig := range strings.Split(want, ",") {
		if got, ok := oem[sig]; !ok {
			missing = append(missing, sig+" absent")
		} else if got != acpiOEMID {
			missing = append(missing, fmt.Sprintf("%s from OEM %q", sig, got))
		}
	}
	if len(missing) > 0 {
		return false, "want " + want + " from " + acpiOEMID + ": " + strings.Join(missing, ", ")
	}
	return true, want + " from " + acpiOEMID
}

// acpiOEMID is firmware/acpi.OEMID; the agent is built on its own and does
// not import the VMM's packages.
const acpiOEMID = "VMMDEV"

// Package ahci is an AHCI 1.3 host bus adapter on a PCI function, as
// firmware and operating systems know it from Intel's ICH9 (QEMU's
// ich9-ahci, 8086:2922): the HBA registers in BAR 5 (ABAR), six ports, SATA
// disks and ATAPI CD/DVD drives served from raw images (storage/raw), and
// one MSI message.
//
// Each port runs its command list on a goroutine of its own, never on the
// vCPU thread that writes PxCI. Everything the guest writes is hostile:
// command headers, command tables, PRDTs and CDBs are checked, and a bad
// command ends with an error status (or a host bus error) the way the
// specification says, never with a panic, a hang, or an access outside
// guest RAM or the image.
package ahci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/vmmdev/vmm/devices/pci"
	"github.com/vmmdev/vmm/storage/block"
)

// PCI identity: Intel ICH9 AHCI, which every AHCI driver knows.
const (
	VendorID = 0x8086
	DeviceID = 0x2922
	// ClassCode is mass storage, SATA, AHCI 1.0 programming interface.
	ClassCode = 0x010601
)

// NumPorts is the number of ports the HBA implements (PI = 0x3f, as QEMU).
const NumPorts = 6

// ABAR layout: generic host control, then 0x80 bytes per port.
const (
	abarBAR   = 5
	abarSize  = 0x1000
	portBase  = 0x100
	portSize  = 0x80
	numSlots  = 32
	hdrSize   = 32 // command header
	fisAreaSz = 256
)

// Generic host control registers.
const (
	regCAP     = 0x00
	regGHC     = 0x04
	regIS      = 0x08
	regPI      = 0x0c
	regVS      = 0x10
	regCCCCTL  = 0x14
	regCCCPort = 0x18
	regEMLoc   = 0x1c
	regEMCtl   = 0x20
	regCAP2    = 0x24
	regBOHC    = 0x28
)

// CAP and GHC bits.
const (
	capS64A    = 1 << 31
	capSNCQ    = 1 << 30
	capSAM     = 1 << 18
	capISSGen1 = 1 << 20
	capNCS     = (numSlots - 1) << 8
	capNP      = NumPorts - 1
	ghcHR      = 1 << 0
	ghcIE      = 1 << 1
	ghcAE      = 1 << 31
	// Version is AHCI 1.3.
	Version = 0x00010300
)

// Sentinel errors of New.
var ErrConfig = errors.New("ahci: invalid configuration")

// Memory is guest-physical memory: Slice returns the host view of
// [gpa, gpa+n) or an error when the range is not inside one RAM region.
type Memory interface {
	Slice(gpa, n uint64) ([]byte, error)
}

// Drive is what sits on one port.
type Drive struct {
	// Image is the medium; nil leaves the port empty. The HBA does not
	// close it.
	Image block.Device
	// CDROM makes it an ATAPI CD/DVD drive (read-only, 2048-byte blocks)
	// rather than a SATA disk.
	CDROM bool
	// Serial is the IDENTIFY serial number (at most 20 ASCII bytes).
	Serial string
}

// Config assembles an HBA.
type Config struct {
	Name string
	// Drives are the ports' drives, port 0 first; at most NumPorts.
	Drives []Drive
	Mem    Memory
	MSI    pci.MSISender
	Log    *slog.Logger
}

// HBA is one AHCI controller.
type HBA struct {
	mem  Memory
	log  *slog.Logger
	name string
	fn   *pci.Function
	msi  *pci.MSI

	// mu guards the HBA's and every port's registers.
	mu    sync.Mutex
	ghc   uint32
	ports [NumPorts]*port
	// resetting: GHC.HR was written and some port may still have
	// commands in flight.
	resetting bool
	// irqDue and kicks are what a change under mu asked for: the MSI and
	// the port goroutines to wake, sent by unlock once mu is free.
	irqDue bool
	kicks  uint32
}

// unlock releases mu, then sends the MSI and wakes the ports that changes
// under it asked for. Waking a thread while holding mu would make it block
// on mu at once: the vCPU that an MSI wakes reads IS first thing, and a
// port goroutine woken by PxCI takes mu to fetch the slot. On a host with
// few CPUs each such collision costs two context switches per command.
func (h *HBA) unlock() {
	irq, kicks := h.irqDue, h.kicks
	h.irqDue, h.kicks = false, 0
	h.mu.Unlock()
	for i, p := range h.ports {
		if kicks&(1<<i) != 0 {
			p.wake()
		}
	}
	if irq {
		h.msi.Signal()
	}
}

// New builds an HBA and starts its ports' goroutines; add Function() to a
// pci.Bus and Close it when the machine stops.
func New(cfg Config) (*HBA, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Mem == nil || cfg.MSI == nil {
		return nil, fmt.Errorf("%w: %s: memory and MSI are required", ErrConfig, cfg.Name)
	}
	if len(cfg.Drives) > NumPorts {
		return nil, fmt.Errorf("%w: %s: %d drives on %d ports", ErrConfig, cfg.Name, len(cfg.Drives), NumPorts)
	}
	h := &HBA{mem: cfg.Mem, log: log, name: cfg.Name, ghc: ghcAE}
	for i := range h.ports {
		var d *device
		if i < len(cfg.Drives) && cfg.Drives[i].Image != nil {
			var err error
			if d, err = newDevice(cfg.Drives[i]); err != nil {
				return nil, fmt.Errorf("%w: %s port %d: %v", ErrConfig, cfg.Name, i, err)
			}
		}
		p, err := newPort(h, i, d)
		if err != nil {
			h.dropKickers()
			return nil, fmt.Errorf("ahci %s port %d: %w", cfg.Name, i, err)
		}
		h.ports[i] = p
	}
	h.msi = pci.NewMSI(cfg.MSI)
	h.msi.OnSendError(func(err error) { log.Warn("ahci: interrupt", "device", cfg.Name, "err", err) })
	fn, err := pci.NewFunction(cfg.Name, pci.Identity{
		Vendor: VendorID, Device: DeviceID, SubVendor: 0x1af4, Subsystem: 0x1100, Revision: 2, Class: ClassCode,
	}, []pci.BAR{{Index: abarBAR, Kind: pci.BARMem32, Size: abarSize, Dev: abarDevice{h}}},
		[]pci.Capability{h.msi.Capability()}, log)
	if err != nil {
		h.dropKickers()
		return nil, fmt.Errorf("ahci %s: %w", cfg.Name, err)
	}
	h.fn = fn
	h.mu.Lock()
	for _, p := range h.ports {
		p.resetLocked()
	}
	h.unlock()
	for _, p := range h.ports {
		go p.run()
	}
	return h, nil
}

// dropKickers closes the ports' eventfds when New fails before their
// goroutines started.
func (h *HBA) dropKickers() {
	for _, p := range h.ports {
		if p != nil {
			p.kick.close()
		}
	}
}

// Function is the PCI function to add to the bus.
func (h *HBA) Function() *pci.Function { return h.fn }

// Close stops every port's goroutine, waiting for a command in flight to
// finish; the images stay open.
func (h *HBA) Close() {
	for _, p := range h.ports {
		p.close()
	}
}

func (h *HBA) capability() uint32 {
	return capS64A | capSNCQ | capSAM | capISSGen1 | capNCS | capNP
}

// pendingLocked is the IS register: the ports with an enabled interrupt
// status bit set.
func (h *HBA) pendingLocked() uint32 {
	var is uint32
	for i, p := range h.ports {
		if p.is&p.ie != 0 {
			is |= 1 << i
		}
	}
	return is
}

// interruptLocked has unlock send the MSI when an enabled interrupt is
// pending. It is called after every change that may leave one pending, a
// status write included: MSI is an edge, and a driver that clears one
// port's bits while another completion arrived must still hear of it.
func (h *HBA) interruptLocked() {
	if h.ghc&ghcIE != 0 && h.pendingLocked() != 0 {
		h.irqDue = true
	}
}

func (h *HBA) readGlobal(reg uint64) uint32 {
	switch reg {
	case regCAP:
		return h.capability()
	case regGHC:
		// HR reads 1 until the commands the reset dropped have
		// stopped writing guest memory (drivers poll it, AHCI 10.4.3).
		if h.resetting {
			h.resetting = false
			for _, p := range h.ports {
				h.resetting = h.resetting || p.active > 0
			}
		}
		if h.resetting {
			return h.ghc | ghcHR
		}
		return h.ghc
	case regIS:
		return h.pendingLocked()
	case regPI:
		return 1<<NumPorts - 1
	case regVS:
		return Version
	}
	// CCC, EM, CAP2 (no BIOS handoff) and BOHC are not implemented: 0.
	return 0
}

func (h *HBA) writeGlobal(reg uint64, v uint32) {
	switch reg {
	case regGHC:
		if v&ghcHR != 0 {
			h.resetLocked()
			return
		}
		h.ghc = ghcAE | v&ghcIE
		h.interruptLocked()
	case regIS:
		// IS follows the ports' status bits; a write that leaves one
		// pending raises the interrupt again.
		h.interruptLocked()
	}
}

// resetLocked is GHC.HR: every port stopped and reset, interrupts off. The
// registers are reset at once; HR reads back 1 while commands in flight
// finish (their results are dropped).
func (h *HBA) resetLocked() {
	h.ghc = ghcAE
	h.resetting = true
	for _, p := range h.ports {
		p.stopLocked()
		p.clb, p.fb, p.ie, p.cmd, p.sctl = 0, 0, 0, 0, 0
		p.resetLocked()
	}
}

// access reads or writes one 32-bit register; other widths are merged
// into 32-bit accesses, since drivers use only those.
func (h *HBA) read(off uint64, data []byte) {
	h.mu.Lock()
	v := h.reg32(off &^ 3)
	h.unlock()
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	for i := range data {
		data[i] = 0
		if o := off&3 + uint64(i); o < 4 {
			data[i] = b[o]
		}
	}
}

func (h *HBA) write(off uint64, data []byte) {
	if len(data) == 0 || len(data) > 4 || off&3+uint64(len(data)) > 4 {
		return
	}
	reg := off &^ 3
	h.mu.Lock()
	defer h.unlock()
	var b [4]byte
	if len(data) < 4 {
		// A narrow write changes only its bytes; the rest of a
		// write-1-to-clear register must not be written as ones.
		if !w1c(reg) {
			binary.LittleEndian.PutUint32(b[:], h.reg32(reg))
		}
	}
	copy(b[off&3:], data)
	v := binary.LittleEndian.Uint32(b[:])
	if reg < portBase {
		h.writeGlobal(reg, v)
		return
	}
	if n := (reg - portBase) / portSize; n < NumPorts {
		h.ports[n].writeReg(reg-portBase-n*portSize, v)
	}
}

func w1c(reg uint64) bool {
	if reg < portBase {
		return reg == regIS
	}
	r := (reg - portBase) % portSize
	return r == pxIS || r == pxSERR || r == pxSNTF || r == pxSACT || r == pxCI
}

func (h *HBA) reg32(reg uint64) uint32 {
	if reg < portBase {
		return h.readGlobal(reg)
	}
	if n := (reg - portBase) / portSize; n < NumPorts {
		return h.ports[n].readReg(reg - portBase - n*portSize)
	}
	return 0
}

// abarDevice decodes BAR 5.
type abarDevice struct{ h *HBA }

func (a abarDevice) Read(off uint64, data []byte)  { a.h.read(off, data) }
func (a abarDevice) Write(off uint64, data []byte) { a.h.write(off, data) }

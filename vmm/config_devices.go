package vmm

import (
	"fmt"
	"net"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/devices/ahci"
	"github.com/vmmdev/vmm/devices/vmbus/storvsc"
	"github.com/vmmdev/vmm/storage/block"
	"github.com/vmmdev/vmm/storage/cloudinit"
)

// Disk is one disk (--disk PATH[,readonly][,snapshot][,format=raw|qcow2][,serial=ID][,if=virtio|nvme|ahci|vmbus]).
type Disk struct {
	Path     string
	ReadOnly bool
	// Format is "raw" or "qcow2"; empty: read from the image's header
	// (storage/block explains the raw-image trap this guards against).
	Format string
	// Snapshot opens the image read-only with a shared lock and sends the
	// guest's writes to a private overlay that vanishes with vmm.
	Snapshot bool
	// Serial is what the guest reads as the disk's serial number
	// (virtio-blk GET_ID, /sys/block/vdX/serial; NVMe Identify Controller;
	// ATA IDENTIFY DEVICE; SCSI unit serial number VPD page for vmbus).
	Serial string
	// Interface is the controller the disk is attached to.
	Interface DiskInterface
}

// DiskInterface is the controller a disk is attached to; the zero value
// is virtio-blk.
type DiskInterface string

// Disk interfaces.
const (
	DiskVirtio DiskInterface = ""
	DiskNVMe   DiskInterface = "nvme"
	DiskAHCI   DiskInterface = "ahci"
	// DiskVMBus is a LUN of the Hyper-V synthetic SCSI controller
	// (storvsc); it needs --vmbus.
	DiskVMBus DiskInterface = "vmbus"
)

// String is the name the --disk flag takes.
func (i DiskInterface) String() string {
	if i == DiskVirtio {
		return "virtio"
	}
	return string(i)
}

// NIC is one network interface on a host tap (--net tap=NAME[,mac=MAC][,if=virtio|vmbus]).
type NIC struct {
	Tap string
	// MAC is the guest's address; nil means a random locally administered one.
	MAC net.HardwareAddr
	// Interface is the NIC's kind: virtio-net ("" or NICVirtio) or a
	// Hyper-V synthetic NIC on VMBus (NICVMBus, needs --vmbus).
	Interface NICInterface
}

// NICInterface is what --net's if= names.
type NICInterface string

const (
	NICVirtio NICInterface = ""
	NICVMBus  NICInterface = "vmbus"
)

// nicSyntax is the value --net takes.
const nicSyntax = "tap=NAME[,mac=MAC][,if=virtio|vmbus]"

// maxSerial is the size of virtio-blk's GET_ID answer.
const maxSerial = 20

// diskSyntax is the value --disk takes.
const diskSyntax = "PATH[,readonly][,snapshot][,format=raw|qcow2][,serial=ID][,if=virtio|nvme|ahci|vmbus]"

// ParseDisk reads the value of one --disk flag.
func ParseDisk(s string) (Disk, error) {
	fields := strings.Split(s, ",")
	d := Disk{Path: fields[0]}
	if d.Path == "" {
		return Disk{}, fmt.Errorf("--disk %q: no image path (%s)", s, diskSyntax)
	}
	for _, f := range fields[1:] {
		switch k, v, hasValue := strings.Cut(f, "="); {
		case k == "readonly" && !hasValue:
			d.ReadOnly = true
		case k == "snapshot" && !hasValue:
			d.Snapshot = true
		case k == "format" && (v == block.FormatRaw || v == block.FormatQcow2):
			d.Format = v
		case k == "serial" && hasValue:
			d.Serial = v
		case k == "if" && v == "virtio":
			d.Interface = DiskVirtio
		case k == "if" && v == "nvme":
			d.Interface = DiskNVMe
		case k == "if" && v == "ahci":
			d.Interface = DiskAHCI
		case k == "if" && v == "vmbus":
			d.Interface = DiskVMBus
		default:
			return Disk{}, fmt.Errorf("--disk %q: unknown option %q (%s)", s, f, diskSyntax)
		}
	}
	if err := checkSerial(d.Serial); err != nil {
		return Disk{}, fmt.Errorf("--disk %q: %w", s, err)
	}
	return d, nil
}

// checkSerial allows what udev can put in a /dev/disk/by-id name unescaped.
func checkSerial(s string) error {
	if len(s) > maxSerial {
		return fmt.Errorf("serial %q is longer than %d bytes", s, maxSerial)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-", c)) {
			return fmt.Errorf("serial %q: only letters, digits, '.', '_' and '-' are allowed", s)
		}
	}
	return nil
}

// ParseNIC reads the value of one --net flag.
func ParseNIC(s string) (NIC, error) {
	var n NIC
	for _, f := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "tap":
			n.Tap = v
		case "if":
			switch v {
			case "virtio":
				n.Interface = NICVirtio
			case "vmbus":
				n.Interface = NICVMBus
			default:
				return NIC{}, fmt.Errorf("--net %q: if=%q: want virtio or vmbus", s, v)
			}
		case "mac":
			mac, err := net.ParseMAC(v)
			if err != nil || len(mac) != 6 {
				return NIC{}, fmt.Errorf("--net %q: mac %q is not an Ethernet address (like 52:54:00:12:34:56)", s, v)
			}
			if mac[0]&1 != 0 {
				return NIC{}, fmt.Errorf("--net %q: mac %s is a multicast address", s, mac)
			}
			n.MAC = mac
		default:
			return NIC{}, fmt.Errorf("--net %q: unknown option %q (%s)", s, f, nicSyntax)
		}
	}
	if err := checkTapName(n.Tap); err != nil {
		return NIC{}, fmt.Errorf("--net %q: %w", s, err)
	}
	return n, nil
}

func checkTapName(name string) error {
	if name == "" || len(name) >= unix.IFNAMSIZ {
		return fmt.Errorf("tap name %q must be 1 to %d bytes", name, unix.IFNAMSIZ-1)
	}
	if name == "." || name == ".." || strings.ContainsAny(name, "/:% \t\n") {
		return fmt.Errorf("tap name %q is not a valid interface name", name)
	}
	return nil
}

// validateDevices checks the disks and NICs: images exist and are
// accessible in the mode asked for, nothing is given twice.
func (c *Config) validateDevices() error {
	seen := map[string]bool{}
	serials := map[string]bool{}
	luns := 0
	for _, d := range c.Disks {
		switch d.Interface {
		case DiskVirtio, DiskNVMe, DiskAHCI:
		case DiskVMBus:
			if !c.VMBus {
				return invalid("--disk %s,if=vmbus needs --vmbus (with --hyperv synic and vpindex)", d.Path)
			}
			if luns++; luns > storvsc.MaxLUNs {
				return invalid("--disk %s: more than %d if=vmbus disks (LUNs of one controller)", d.Path, storvsc.MaxLUNs)
			}
		default:
			return invalid("--disk %s: unknown interface %q", d.Path, d.Interface)
		}
		// Linux refuses a second NVMe controller with the same serial
		// (it takes them for two paths to one subsystem).
		if d.Interface == DiskNVMe && d.Serial != "" {
			if serials[d.Serial] {
				return invalid("--disk %s: NVMe serial %q given twice", d.Path, d.Serial)
			}
			serials[d.Serial] = true
		}
		if err := checkSerial(d.Serial); err != nil {
			return invalid("--disk %s: %v", d.Path, err)
		}
		if _, err := checkFile("--disk", d.Path, 1<<62); err != nil {
			return err
		}
		if d.Format != "" && d.Format != block.FormatRaw && d.Format != block.FormatQcow2 {
			return invalid("--disk %s: unknown format %q (raw or qcow2)", d.Path, d.Format)
		}
		if _, _, err := block.Check(d.Path, d.Format); err != nil {
			return invalid("--disk %s: %v", d.Path, err)
		}
		if !d.ReadOnly && !d.Snapshot {
			if err := unix.Access(d.Path, unix.W_OK); err != nil {
				return invalid("--disk %s: not writable (add ,readonly?): %v", d.Path, err)
			}
		}
		if seen[d.Path] {
			return invalid("--disk %s: given twice", d.Path)
		}
		seen[d.Path] = true
	}
	if err := c.validateAHCI(seen); err != nil {
		return err
	}
	if c.CloudInit != "" {
		if err := cloudinit.Check(c.CloudInit); err != nil {
			return invalid("--cloud-init: %v", err)
		}
	}
	taps := map[string]bool{}
	for _, n := range c.NICs {
		if err := checkTapName(n.Tap); err != nil {
			return invalid("--net: %v", err)
		}
		if n.MAC != nil && (len(n.MAC) != 6 || n.MAC[0]&1 != 0) {
			return invalid("--net tap=%s: mac %v is not a unicast Ethernet address", n.Tap, n.MAC)
		}
		if taps[n.Tap] {
			return invalid("--net tap=%s: given twice", n.Tap)
		}
		taps[n.Tap] = true
	}
	return nil
}

// validateAHCI checks the drives of the AHCI controller: they fit its
// ports, and every CD-ROM image is readable and not also a disk.
func (c *Config) validateAHCI(seen map[string]bool) error {
	n := len(c.CDROMs)
	for _, d := range c.Disks {
		if d.Interface == DiskAHCI {
			n++
		}
	}
	if n > ahci.NumPorts {
		return invalid("%d AHCI disks and CD-ROMs: the controller has %d ports", n, ahci.NumPorts)
	}
	for _, p := range c.CDROMs {
		if _, err := checkFile("--cdrom", p, 1<<62); err != nil {
			return err
		}
		_, size, err := block.Check(p, block.FormatProbe)
		if err != nil {
			return invalid("--cdrom %s: %v", p, err)
		}
		if size < 2048 {
			return invalid("--cdrom %s: %d bytes is less than one 2048-byte block", p, size)
		}
		if seen[p] {
			return invalid("--cdrom %s: given twice", p)
		}
		seen[p] = true
	}
	return nil
}

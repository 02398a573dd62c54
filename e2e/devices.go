package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/pattern"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The disk and network scenario's fixtures in the outer machine.
const (
	rwImage     = "/tmp/vmm-disk-rw.img"
	roImage     = "/tmp/vmm-disk-ro.img"
	rwSerial    = "vmm-rw"
	roSerial    = "vmm-ro"
	tapName     = "vmmtap0"
	tapAddr     = "10.0.2.1/24"
	guestAddr   = "10.0.2.15/24"
	peerPort    = 7777
	netBytes    = 4 << 20
	rwImageSize = 8 << 20
	roImageSize = 1 << 20
	// Pattern seeds: the rw image starts with rwSeed and must end with
	// rwNewSeed; the ro image must keep roSeed.
	rwSeed, rwNewSeed, roSeed = 1, 2, 3
)

// diskNetScenario boots once with two disks (one read-only, both with
// serials) and a NIC on a tap: the agent reads and rewrites the first disk,
// fails to write the second, finds both by id, pings the tap and moves
// netBytes each way over TCP. The outer init checks the images afterwards.
func diskNetScenario() (scenario.Scenario, error) {
	g := testhost.Guest{
		Quiet:   true,
		Checks:  []string{"boot", "disk", "disk-ro", "disk-ids", "net"},
		Timeout: 150 * time.Second,
		ExtraCmdline: strings.Join([]string{
			fmt.Sprintf("vmm.disk=%s:%d:%d", rwSerial, rwSeed, rwNewSeed),
			fmt.Sprintf("vmm.disk_ro=%s:%d", roSerial, roSeed),
			"vmm.disk_ids=" + rwSerial + "," + roSerial,
			fmt.Sprintf("vmm.net=%s,%s:%d,%d", guestAddr, strings.TrimSuffix(tapAddr, "/24"), peerPort, netBytes),
		}, " "),
	}
	args, err := g.Args(scenario.RunnerVMM)
	if err != nil {
		return scenario.Scenario{}, err
	}
	args = append(args,
		"--disk", rwImage+",serial="+rwSerial,
		"--disk", roImage+",readonly,serial="+roSerial,
		"--net", "tap="+tapName+",mac=52:54:00:12:34:56")
	return scenario.Scenario{
		Name: "disk-net", Args: args, WantExit: exitPoweroff,
		WantChecks: map[string]string{"boot": scenario.Pass, "disk": scenario.Pass, "disk-ro": scenario.Pass,
			"disk-ids": scenario.Pass, "net": scenario.Pass},
		Timeout: (g.Timeout + 30*time.Second).String(),
		Disks: []scenario.Disk{
			{Path: rwImage, Size: rwImageSize, Seed: rwSeed, WantSeed: rwNewSeed},
			{Path: roImage, Size: roImageSize, Seed: roSeed, WantSeed: roSeed},
		},
		Tap: &scenario.Tap{Name: tapName, Addr: tapAddr, Port: peerPort},
	}, nil
}

// The NVMe scenario's fixture: an image the guest rewrites through the
// nvme driver, from each of two vCPUs (so through two I/O queues).
const (
	nvmeImage     = "/tmp/vmm-nvme.img"
	nvmeSerial    = "vmm-nvme-e2e"
	nvmeImageSize = 8 << 20
	// The image starts with nvmeSeed and must end with nvmeNewSeed.
	nvmeSeed, nvmeNewSeed = 4, 5
	// A second, read-only controller's image must keep nvmeROSeed.
	nvmeROImage  = "/tmp/vmm-nvme-ro.img"
	nvmeROSerial = "vmm-nvme-ro"
	nvmeROSize   = 1 << 20
	nvmeROSeed   = 9
)

// nvmeScenario boots two vCPUs with one disk on an NVMe controller: the
// agent finds it through the nvme driver in sysfs, checks one I/O queue per
// CPU, reads the pattern and writes the second one from each CPU in turn,
// syncs (an NVMe FLUSH) and requires every queue's interrupt to have fired;
// a second, read-only controller's disk must be read-only in the guest and
// refuse a write. The outer init checks the images after vmm exits.
func nvmeScenario() (scenario.Scenario, error) {
	g := testhost.Guest{
		CPUs: 2, ExpectCPUs: 2, Quiet: true,
		Checks:       []string{"boot", "cpus", "disk-nvme"},
		Timeout:      150 * time.Second,
		ExtraCmdline: fmt.Sprintf("vmm.disk_nvme=%s:%d:%d,%s:%d", nvmeSerial, nvmeSeed, nvmeNewSeed, nvmeROSerial, nvmeROSeed),
	}
	args, err := g.Args(scenario.RunnerVMM)
	if err != nil {
		return scenario.Scenario{}, err
	}
	args = append(args, "--disk", nvmeImage+",if=nvme,serial="+nvmeSerial,
		"--disk", nvmeROImage+",if=nvme,readonly,serial="+nvmeROSerial)
	return scenario.Scenario{
		Name: "disk-nvme", Args: args, WantExit: exitPoweroff,
		WantChecks: map[string]string{"boot": scenario.Pass, "cpus": scenario.Pass, "disk-nvme": scenario.Pass},
		Timeout:    (g.Timeout + 30*time.Second).String(),
		Disks: []scenario.Disk{
			{Path: nvmeImage, Size: nvmeImageSize, Seed: nvmeSeed, WantSeed: nvmeNewSeed},
			{Path: nvmeROImage, Size: nvmeROSize, Seed: nvmeROSeed, WantSeed: nvmeROSeed},
		},
	}, nil
}

// The AHCI scenario's fixtures: a disk the guest rewrites through the ahci
// driver, and a CD-ROM: an ISO 9660 image with one file of a known pattern,
// whose SHA-256 the guest must find through sr_mod and isofs; the host
// checks both after exit (the CD-ROM's file must be unchanged).
const (
	ahciImage     = "/tmp/vmm-ahci.img"
	ahciSerial    = "vmm-ahci-e2e"
	ahciImageSize = 8 << 20
	ahciSeed      = 6
	ahciNewSeed   = 7
	cdromImage    = "/tmp/vmm-cdrom.iso"
	cdromFile     = "data.bin"
	cdromSize     = 2<<20 + 512 // the file: more than one extent's worth of sectors, not whole 2048-byte blocks
	cdromSeed     = 8
	// A read-only SATA disk on the next port must keep ahciROSeed.
	ahciROImage  = "/tmp/vmm-ahci-ro.img"
	ahciROSerial = "vmm-ahci-ro"
	ahciROSize   = 1 << 20
	ahciROSeed   = 10
)

// patternSHA256 is the hex SHA-256 of the first n bytes of stream seed.
func patternSHA256(seed uint64, n int64) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, pattern.NewReader(seed, n)); err != nil {
		return "", fmt.Errorf("pattern checksum: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ahciScenario boots one vCPU with a SATA disk, a read-only SATA disk (its
// writes must fail in the guest) and a CD-ROM on the AHCI controller.
func ahciScenario() (scenario.Scenario, error) {
	sum, err := patternSHA256(cdromSeed, cdromSize)
	if err != nil {
		return scenario.Scenario{}, err
	}
	g := testhost.Guest{
		CPUs: 1, ExpectCPUs: 1, Quiet: true,
		Checks:  []string{"boot", "disk-ahci", "cdrom"},
		Timeout: 150 * time.Second,
		ExtraCmdline: fmt.Sprintf("vmm.disk_ahci=%s:%d:%d,%s:%d vmm.cdrom=%s:%s", ahciSerial, ahciSeed, ahciNewSeed,
			ahciROSerial, ahciROSeed, cdromFile, sum),
	}
	args, err := g.Args(scenario.RunnerVMM)
	if err != nil {
		return scenario.Scenario{}, err
	}
	args = append(args, "--disk", ahciImage+",if=ahci,serial="+ahciSerial,
		"--disk", ahciROImage+",if=ahci,readonly,serial="+ahciROSerial, "--cdrom", cdromImage)
	return scenario.Scenario{
		Name: "disk-ahci", Args: args, WantExit: exitPoweroff,
		WantChecks: map[string]string{"boot": scenario.Pass, "disk-ahci": scenario.Pass, "cdrom": scenario.Pass},
		Timeout:    (g.Timeout + 30*time.Second).String(),
		Disks: []scenario.Disk{
			{Path: ahciImage, Size: ahciImageSize, Seed: ahciSeed, WantSeed: ahciNewSeed},
			{Path: ahciROImage, Size: ahciROSize, Seed: ahciROSeed, WantSeed: ahciROSeed},
			{Path: cdromImage, Size: cdromSize, Seed: cdromSeed, WantSeed: cdromSeed, ISOFile: cdromFile},
		},
	}, nil
}

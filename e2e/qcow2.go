package e2e

import (
	"fmt"
	"strings"
	"time"

	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/images/testhost"
)

// The qcow2 scenario's fixtures (issue 16): a qcow2 disk the guest
// rewrites, and two bases in snapshot mode, one qcow2 and one raw, which
// the guest rewrites too, into private overlays: the outer init requires
// the first to hold the new pattern through storage/qcow2's reader, and the
// bases to be byte for byte what it wrote.
const (
	qcowImage     = "/tmp/vmm-qcow2.img"
	qcowSnapImage = "/tmp/vmm-qcow2-base.img"
	rawSnapImage  = "/tmp/vmm-raw-base.img"
	qcowSerial    = "vmm-qcow2"
	qcowSnapSer   = "vmm-qcow2-snap"
	rawSnapSer    = "vmm-raw-snap"
	qcowImageSize = 8 << 20
	// Pattern seeds: each disk starts with the first and the guest writes
	// the second.
	qcowSeed, qcowNewSeed         = 9, 10
	qcowSnapSeed, qcowSnapNewSeed = 11, 12
	rawSnapSeed, rawSnapNewSeed   = 13, 14
)

const diskQcow2 = "disk-qcow2"

// The cloud-init seed directory the scenario attaches (its disk's serial
// is cidata, which the agent must find).
const seedDir = "/tmp/vmm-seed"

// qcow2Scenario boots once with the three disks on virtio-blk and a
// cloud-init seed: the agent reads each disk's pattern and writes and syncs
// the next, so the qcow2 writer allocates clusters under a real guest and
// the snapshot overlays take every write, and it finds every disk by its
// serial, the seed's (cidata) included.
func qcow2Scenario() (scenario.Scenario, error) {
	g := testhost.Guest{
		Quiet:   true,
		Checks:  []string{"boot", "disk", "disk-ids"},
		Timeout: 150 * time.Second,
		ExtraCmdline: "vmm.disk=" + strings.Join([]string{
			fmt.Sprintf("%s:%d:%d", qcowSerial, qcowSeed, qcowNewSeed),
			fmt.Sprintf("%s:%d:%d", qcowSnapSer, qcowSnapSeed, qcowSnapNewSeed),
			fmt.Sprintf("%s:%d:%d", rawSnapSer, rawSnapSeed, rawSnapNewSeed),
		}, ",") + " vmm.disk_ids=" + strings.Join([]string{qcowSerial, qcowSnapSer, rawSnapSer, "cidata"}, ","),
	}
	args, err := g.Args(scenario.RunnerVMM)
	if err != nil {
		return scenario.Scenario{}, err
	}
	args = append(args,
		"--disk", qcowImage+",serial="+qcowSerial,
		"--disk", qcowSnapImage+",snapshot,serial="+qcowSnapSer,
		"--disk", rawSnapImage+",snapshot,format=raw,serial="+rawSnapSer,
		"--cloud-init", seedDir)
	return scenario.Scenario{
		Name: diskQcow2, Args: args, WantExit: exitPoweroff,
		WantChecks: map[string]string{"boot": scenario.Pass, "disk": scenario.Pass, "disk-ids": scenario.Pass},
		Timeout:    (g.Timeout + 30*time.Second).String(),
		Disks: []scenario.Disk{
			{Path: qcowImage, Size: qcowImageSize, Seed: qcowSeed, WantSeed: qcowNewSeed, Format: "qcow2"},
			{Path: qcowSnapImage, Size: qcowImageSize, Seed: qcowSnapSeed, WantSeed: qcowSnapSeed, Format: "qcow2", Unchanged: true},
			{Path: rawSnapImage, Size: qcowImageSize, Seed: rawSnapSeed, WantSeed: rawSnapSeed, Unchanged: true},
		},
		Files: map[string]string{seedDir + "/user-data": "#cloud-config\n", seedDir + "/meta-data": "local-hostname: vmm-e2e\n"},
	}, nil
}

package vmm

import (
	"fmt"
	"slices"

	"github.com/vmmdev/vmm/storage/block"
	"github.com/vmmdev/vmm/storage/cloudinit"
)

// attachCloudInit builds the cloud-init seed of cfg.CloudInit into an
// unlinked temporary file (nothing is left behind however vmm ends) and
// adds it as the last virtio-blk disk, read-only and raw, so it never
// displaces the boot disk. A meta-data without instance-id gets a new one
// per run, so cloud-init treats every run as a first boot.
func (m *Machine) attachCloudInit() error {
	if m.cfg.CloudInit == "" {
		return nil
	}
	id := cloudinit.NewInstanceID()
	f, err := cloudinit.BuildTemp(m.cfg.CloudInit, block.TempDir(), id)
	if err != nil {
		return fmt.Errorf("--cloud-init %s: %w", m.cfg.CloudInit, err)
	}
	m.seed = f
	// The disk layer opens images by name: the seed's name is its descriptor.
	path := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	m.cfg.Disks = append(slices.Clone(m.cfg.Disks),
		Disk{Path: path, ReadOnly: true, Format: block.FormatRaw, Serial: cloudinit.Label})
	m.log.Info("cloud-init seed", "dir", m.cfg.CloudInit, "instance_id_if_missing", id)
	return nil
}

package vmm

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/vmmdev/vmm/devices/virtio"
	"github.com/vmmdev/vmm/devices/virtio/blk"
	vnet "github.com/vmmdev/vmm/devices/virtio/net"
)

// virtioBackend is one virtio device model with the host resource behind it.
type virtioBackend struct {
	name  string
	dev   virtio.Device
	close func() error
}

// openVirtioBackends opens the images of cfg.Disks and the taps of cfg.NICs,
// in flag order, as virtio devices. On error nothing stays open.
func openVirtioBackends(cfg *Config, log *slog.Logger) ([]virtioBackend, error) {
	var out []virtioBackend
	fail := func(err error) ([]virtioBackend, error) {
		closeVirtioBackends(out)
		return nil, err
	}
	for i, d := range cfg.Disks {
		if d.Interface != DiskVirtio {
			continue
		}
		disk, err := blk.Open(blk.Options{Path: d.Path, ReadOnly: d.ReadOnly, Format: d.Format, Snapshot: d.Snapshot,
			Serial: d.Serial}, log)
		if err != nil {
			if errors.Is(err, blk.ErrBusy) {
				return fail(invalid("--disk %s: %v", d.Path, err))
			}
			return fail(fmt.Errorf("--disk %s: %w", d.Path, err))
		}
		log.Info("virtio-blk", "disk", i, "path", d.Path, "sectors", disk.Capacity(), "readonly", d.ReadOnly,
			"snapshot", d.Snapshot, "serial", d.Serial)
		out = append(out, virtioBackend{name: fmt.Sprintf("virtio-blk%d", i), dev: blk.NewDevice(disk, log), close: disk.Close})
	}
	for i, n := range cfg.NICs {
		if n.Interface != NICVirtio {
			continue // on VMBus (vmbus.go)
		}
		tap, err := vnet.OpenTap(n.Tap)
		if err != nil {
			return fail(fmt.Errorf("--net tap=%s: %w", n.Tap, err))
		}
		dev, err := vnet.New(tap, n.MAC, log)
		if err != nil {
			tap.Close()
			return fail(fmt.Errorf("--net tap=%s: %w", n.Tap, err))
		}
		log.Info("virtio-net", "nic", i, "tap", tap.Name(), "mac", dev.MAC().String(), "offloads", tap.Offloads())
		unwatch := followTapLink(tap.Name(), dev.SetLink, log)
		out = append(out, virtioBackend{name: fmt.Sprintf("virtio-net%d", i), dev: dev, close: func() error {
			unwatch()
			return dev.Close()
		}})
	}
	return out, nil
}

// closeVirtioBackends stops the devices and releases their files.
func closeVirtioBackends(bs []virtioBackend) error {
	var errs []error
	for _, b := range bs {
		b.dev.Reset()
		errs = append(errs, b.close())
	}
	return errors.Join(errs...)
}

// addDisksAndNICs opens cfg.Disks and cfg.NICs and puts each on the PCI bus.
func (m *Machine) addDisksAndNICs() error {
	bs, err := openVirtioBackends(&m.cfg, m.log)
	if err != nil {
		return err
	}
	m.pci.backends = bs
	for _, b := range bs {
		if err := m.addVirtio(b.name, b.dev); err != nil {
			return err
		}
	}
	return nil
}

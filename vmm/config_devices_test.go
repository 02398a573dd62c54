package vmm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseDisk(t *testing.T) {
	d, err := ParseDisk("/img/a.raw,readonly,serial=vmm-ro_1.0")
	require.NoError(t, err)
	require.Equal(t, Disk{Path: "/img/a.raw", ReadOnly: true, Serial: "vmm-ro_1.0"}, d)
	d, err = ParseDisk("b.img")
	require.NoError(t, err)
	require.Equal(t, Disk{Path: "b.img"}, d)
	d, err = ParseDisk("c.img,if=nvme,serial=n1")
	require.NoError(t, err)
	require.Equal(t, Disk{Path: "c.img", Serial: "n1", Interface: DiskNVMe}, d)
	d, err = ParseDisk("s.img,if=ahci,serial=s1,readonly")
	require.NoError(t, err)
	require.Equal(t, Disk{Path: "s.img", Serial: "s1", ReadOnly: true, Interface: DiskAHCI}, d)
	d, err = ParseDisk("v.img,if=vmbus,serial=v1")
	require.NoError(t, err)
	require.Equal(t, Disk{Path: "v.img", Serial: "v1", Interface: DiskVMBus}, d)
	d, err = ParseDisk("c.img,if=virtio")
	require.NoError(t, err)
	require.Equal(t, Disk{Path: "c.img"}, d)
	d, err = ParseDisk("q.qcow2,snapshot,format=qcow2,if=nvme")
	require.NoError(t, err)
	require.Equal(t, Disk{Path: "q.qcow2", Snapshot: true, Format: "qcow2", Interface: DiskNVMe}, d)
	d, err = ParseDisk("r.img,format=raw")
	require.NoError(t, err)
	require.Equal(t, Disk{Path: "r.img", Format: "raw"}, d)
	for _, bad := range []string{"", ",readonly", "a,ro", "a,if=scsi", "a,format=vmdk", "a,format", "a,snapshot=1", "a,if", "a,if=", "a,readonly=1", "a,serial", "a,serial=123456789012345678901", "a,serial=x y", "a,serial=a/b"} {
		_, err := ParseDisk(bad)
		require.Error(t, err, bad)
	}
}

func TestParseNIC(t *testing.T) {
	n, err := ParseNIC("tap=vmmtap0,mac=52:54:00:12:34:56")
	require.NoError(t, err)
	require.Equal(t, "vmmtap0", n.Tap)
	require.Equal(t, "52:54:00:12:34:56", n.MAC.String())
	n, err = ParseNIC("tap=t1")
	require.NoError(t, err)
	require.Nil(t, n.MAC)
	require.Equal(t, NICVirtio, n.Interface)
	n, err = ParseNIC("tap=t1,if=vmbus")
	require.NoError(t, err)
	require.Equal(t, NICVMBus, n.Interface)
	n, err = ParseNIC("if=virtio,tap=t1")
	require.NoError(t, err)
	require.Equal(t, NICVirtio, n.Interface)
	for _, bad := range []string{"", "tap=", "mac=52:54:00:12:34:56", "tap=a,mac=01:00:5e:00:00:01", "tap=a,mac=zz",
		"tap=a,mac=00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01", "tap=a,x=1", "tap=a,if=e1000", "tap=a,if=", "tap=0123456789abcdef", "tap=a/b", "tap=.."} {
		_, err := ParseNIC(bad)
		require.Error(t, err, bad)
	}
}

func TestValidateDevices(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "d.img")
	require.NoError(t, os.WriteFile(img, make([]byte, 4096), 0o600))
	require.NoError(t, os.WriteFile(img+"2", make([]byte, 4096), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "small"), make([]byte, 100), 0o600))
	base := Config{Program: &Program{}, CPUs: 1, Memory: 16 << 20}

	ok := base
	ok.Disks = []Disk{{Path: img}, {Path: img + "2", Serial: "s", Interface: DiskNVMe}}
	ok.NICs = []NIC{{Tap: "t0"}, {Tap: "t1"}}
	require.NoError(t, ok.Validate())
	iso := filepath.Join(dir, "cd.iso")
	require.NoError(t, os.WriteFile(iso, make([]byte, 2048), 0o600))
	ok.Disks = append(ok.Disks, Disk{Path: img + "3", Interface: DiskAHCI})
	require.NoError(t, os.WriteFile(img+"3", make([]byte, 4096), 0o600))
	ok.CDROMs = []string{iso}
	require.NoError(t, ok.Validate())
	withVMBus := ok
	withVMBus.VMBus = true
	withVMBus.HyperV.SynIC = true
	withVMBus.Disks = []Disk{{Path: img, Interface: DiskVMBus}, {Path: img + "2", Interface: DiskVMBus, ReadOnly: true}}
	require.NoError(t, withVMBus.Validate())

	cases := map[string]func(c *Config){
		"missing image": func(c *Config) { c.Disks = []Disk{{Path: filepath.Join(dir, "nope")}} },
		"directory":     func(c *Config) { c.Disks = []Disk{{Path: dir}} },
		"twice":         func(c *Config) { c.Disks = []Disk{{Path: img}, {Path: img, ReadOnly: true}} },
		"bad serial":    func(c *Config) { c.Disks = []Disk{{Path: img, Serial: strings.Repeat("x", 21)}} },
		"bad interface": func(c *Config) { c.Disks = []Disk{{Path: img, Interface: "ide"}} },
		"NVMe serial twice": func(c *Config) {
			c.Disks = []Disk{{Path: img, Serial: "s", Interface: DiskNVMe}, {Path: img + "2", Serial: "s", Interface: DiskNVMe}}
		},
		"CD-ROM missing":   func(c *Config) { c.CDROMs = []string{filepath.Join(dir, "nope.iso")} },
		"CD-ROM too small": func(c *Config) { c.CDROMs = []string{img[:len(img)-5] + "small"} },
		"CD-ROM is a disk": func(c *Config) { c.Disks = []Disk{{Path: img}}; c.CDROMs = []string{img} },
		"seven AHCI drives": func(c *Config) {
			c.Disks = []Disk{{Path: img, Interface: DiskAHCI}}
			c.CDROMs = []string{img + "2", img + "2", img + "2", img + "2", img + "2", img + "2"}
		},
		"vmbus disk without --vmbus": func(c *Config) { c.Disks = []Disk{{Path: img, Interface: DiskVMBus}} },
		"tap twice":                  func(c *Config) { c.NICs = []NIC{{Tap: "a"}, {Tap: "a"}} },
		"tap no name":                func(c *Config) { c.NICs = []NIC{{}} },
		"multicast mac":              func(c *Config) { c.NICs = []NIC{{Tap: "a", MAC: []byte{1, 0, 0, 0, 0, 1}}} },
		"vmbus NIC without --vmbus":  func(c *Config) { c.NICs = []NIC{{Tap: "a", Interface: NICVMBus}} },
	}
	for name, mod := range cases {
		c := base
		mod(&c)
		require.ErrorIs(t, c.Validate(), ErrInvalidConfig, name)
	}
}

// FuzzParseDevices: flag values are user input; the parsers must never
// panic, and what they accept must validate the same way.
func FuzzParseDevices(f *testing.F) {
	for _, s := range []string{"a.img,readonly,serial=x", "a,serial=", "tap=vmmtap0,mac=52:54:00:12:34:56", "tap=a,mac=", ",,,", "tap=%d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := ParseDisk(s); err == nil {
			if d.Path == "" || checkSerial(d.Serial) != nil {
				t.Fatalf("ParseDisk(%q) accepted %+v", s, d)
			}
		}
		if n, err := ParseNIC(s); err == nil {
			c := Config{NICs: []NIC{n}}
			if err := c.validateDevices(); err != nil {
				t.Fatalf("ParseNIC(%q) accepted %+v, which fails validation: %v", s, n, err)
			}
		}
	})
}

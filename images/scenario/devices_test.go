package scenario

import (
	"errors"
	"testing"
)

func TestValidateDevices(t *testing.T) {
	base := Scenario{Name: "d", Args: []string{"run"}}
	good := base
	good.Disks = []Disk{{Path: "/tmp/a.img", Size: 1 << 20, Seed: 1, WantSeed: 2}}
	good.Tap = &Tap{Name: "vmmtap0", Addr: "10.0.2.1/24", Port: 7777,
		NetBoot: &NetBoot{Client: "10.0.2.15", Path: "/boot.ipxe", Script: "#!ipxe\n"}}
	good.Files = map[string]string{"/tmp/seed/user-data": "#cloud-config\n"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(s *Scenario){
		func(s *Scenario) { s.Disks = []Disk{{Path: "/etc/passwd", Size: 512}} },
		func(s *Scenario) { s.Disks = []Disk{{Path: "/tmp/../etc/x", Size: 512}} },
		func(s *Scenario) { s.Disks = []Disk{{Path: "/tmp/a", Size: 100}} },
		func(s *Scenario) { s.Disks = []Disk{{Path: "/tmp/a", Size: 1 << 40}} },
		func(s *Scenario) { s.Tap = &Tap{Name: "", Addr: "10.0.2.1/24", Port: 1} },
		func(s *Scenario) { s.Tap = &Tap{Name: "t", Addr: "8.8.8.8/24", Port: 1} },
		func(s *Scenario) { s.Tap = &Tap{Name: "t", Addr: "10.0.2.1", Port: 1} },
		func(s *Scenario) { s.Tap = &Tap{Name: "t", Addr: "10.0.2.1/24", Port: 0} },
		func(s *Scenario) { s.Tap = &Tap{Name: "t", Addr: "10.0.2.1/24", Port: 80} },
		func(s *Scenario) {
			s.Tap = &Tap{Name: "t", Addr: "10.0.2.1/24", Port: 1, NetBoot: &NetBoot{Client: "10.0.3.15", Path: "/b"}}
		},
		func(s *Scenario) {
			s.Tap = &Tap{Name: "t", Addr: "10.0.2.1/24", Port: 1, NetBoot: &NetBoot{Client: "10.0.2.1", Path: "/b"}}
		},
		func(s *Scenario) {
			s.Tap = &Tap{Name: "t", Addr: "10.0.2.1/24", Port: 1, NetBoot: &NetBoot{Client: "10.0.2.15", Path: "b"}}
		},
		func(s *Scenario) {
			s.Tap = &Tap{Name: "t", Addr: "10.0.2.1/24", Port: 1, NetBoot: &NetBoot{Client: "10.0.2.15", Path: "/a b"}}
		},
		func(s *Scenario) { s.Disks = []Disk{{Path: "/tmp/a", Size: 512, Format: "vmdk"}} },
		func(s *Scenario) { s.Disks = []Disk{{Path: "/tmp/a", Size: 512, Format: "qcow2", ISOFile: "a.bin"}} },
		func(s *Scenario) {
			s.Disks = []Disk{{Path: "/tmp/a", Size: 512, Seed: 1, WantSeed: 2, Unchanged: true}}
		},
		func(s *Scenario) { s.Files = map[string]string{"/etc/cron.d/x": ""} },
		func(s *Scenario) { s.Files = map[string]string{"/tmp/../etc/x": ""} },
		func(s *Scenario) { s.Files = map[string]string{"/tmp/big": string(make([]byte, maxFilesSize+1))} },
		func(s *Scenario) { s.Blobs = map[string][]byte{"/etc/x": {0xff}} },
		func(s *Scenario) {
			s.Files = map[string]string{"/tmp/a": string(make([]byte, maxFilesSize/2+1))}
			s.Blobs = map[string][]byte{"/tmp/b": make([]byte, maxFilesSize/2)}
		},
	}
	for i, mod := range bad {
		s := base
		mod(&s)
		if err := s.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("case %d: Validate = %v, want ErrInvalid", i, err)
		}
	}
}

// TestBlobsSurviveJSON: a blob that is not UTF-8 (a kernel) reaches the
// outer init byte for byte, and files and blobs come back together.
func TestBlobsSurviveJSON(t *testing.T) {
	blob := []byte{0x7f, 'E', 'L', 'F', 0xff, 0xfe, 0x00, 0x80}
	in := []Scenario{{Name: "b", Args: []string{"run"}, Files: map[string]string{"/tmp/t": "text"},
		Blobs: map[string][]byte{"/tmp/k.elf": blob}}}
	data, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	all := out[0].AllFiles()
	if string(all["/tmp/k.elf"]) != string(blob) || string(all["/tmp/t"]) != "text" || len(all) != 2 {
		t.Fatalf("AllFiles after a round trip = %q", all)
	}
}

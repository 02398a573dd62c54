package scenario

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strings"
)

// Disk is an image the outer init creates before a run, filled with
// pattern stream Seed (package images/pattern), and checks after it: the
// whole image must then hold stream WantSeed, byte for byte. With ISOFile
// set the image is instead an ISO 9660 volume whose one file of that name
// holds Size bytes of stream Seed, and after the run holds WantSeed's.
type Disk struct {
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	Seed     uint64 `json:"seed"`
	WantSeed uint64 `json:"want_seed"`
	ISOFile  string `json:"iso_file,omitempty"`
	// Format "qcow2" makes the image a qcow2 file (storage/qcow2) whose
	// virtual disk holds the pattern; empty: raw.
	Format string `json:"format,omitempty"`
	// Unchanged has the outer init require the image file to be byte for
	// byte what it wrote (a base image under --snapshot, a read-only disk).
	Unchanged bool `json:"unchanged,omitempty"`
}

// Tap is a tap interface the outer init creates for a run, with Addr (CIDR)
// on it, and a TCP peer on Addr:Port for the agent's transfer check: a
// connection that starts with 'U' and an 8-byte big-endian length sends that
// many bytes of pattern stream UploadSeed and gets their check back; one that
// starts with 'D' and a length receives that many bytes of DownloadSeed;
// one that starts with 'T' is an upload timed by the agent (ReceiveTimed),
// one with 'R' a download it times (SendTimed);
// one that starts with 'L' and a hold in milliseconds gets PeerOK, then the
// tap goes down for the hold and up again (a link flap the guest watches).
type Tap struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	Port int    `json:"port"`
	// NetBoot, when set, has the outer init network-boot the guest.
	NetBoot *NetBoot `json:"netboot,omitempty"`
}

// NetBoot: the outer init answers DHCP on the tap for one guest, which
// gets Client (in the tap's subnet; the tap's address is its server and
// router) and the boot file http://<tap address><Path>, served over HTTP
// with Script as its content (images/netboot). The run fails if the guest
// took no lease or never fetched the file.
type NetBoot struct {
	Client string `json:"client"`
	Path   string `json:"path"`
	Script string `json:"script"`
}

// URL is the boot file's URL on tap address server.
func (n NetBoot) URL(server netip.Addr) string { return "http://" + server.String() + n.Path }

// Pattern streams of the network check.
const (
	UploadSeed   = 0x75706c6f6164 // "upload"
	DownloadSeed = 0x646f776e6c64 // "downld"
)

// Peer protocol: the reply to an upload.
const (
	PeerOK  = "OK\n"
	PeerBad = "BAD\n"
)

// isoName is a file name every ISO 9660 reader takes as it is.
var isoName = regexp.MustCompile(`^[a-z0-9_]{1,8}(\.[a-z0-9_]{1,3})?$`)

// maxDiskSize bounds what the outer init writes into its tmpfs.
const maxDiskSize = 512 << 20

// maxFilesSize bounds a scenario's Files: they travel in its JSON.
const maxFilesSize = 1 << 20

func (s Scenario) validateDevices() error {
	for _, d := range s.Disks {
		if !path.IsAbs(d.Path) || path.Clean(d.Path) != d.Path || !strings.HasPrefix(d.Path, "/tmp/") {
			return fmt.Errorf("%w: scenario %q: disk path %q must be a clean path under /tmp", ErrInvalid, s.Name, d.Path)
		}
		if d.Size <= 0 || d.Size > maxDiskSize || d.Size%512 != 0 {
			return fmt.Errorf("%w: scenario %q: disk %s: size %d must be a multiple of 512 up to %d", ErrInvalid, s.Name, d.Path, d.Size, maxDiskSize)
		}
		if d.Format != "" && d.Format != "qcow2" || d.Format != "" && d.ISOFile != "" {
			return fmt.Errorf("%w: scenario %q: disk %s: format %q (qcow2, or empty for raw; not with an ISO file)", ErrInvalid, s.Name, d.Path, d.Format)
		}
		if d.Unchanged && d.WantSeed != d.Seed {
			return fmt.Errorf("%w: scenario %q: disk %s: unchanged, yet a new pattern is wanted", ErrInvalid, s.Name, d.Path)
		}
		if d.ISOFile != "" && !isoName.MatchString(d.ISOFile) {
			return fmt.Errorf("%w: scenario %q: disk %s: ISO file name %q must be 8.3 lower case", ErrInvalid, s.Name, d.Path, d.ISOFile)
		}
	}
	total := 0
	for p, data := range s.AllFiles() {
		if !path.IsAbs(p) || path.Clean(p) != p || !strings.HasPrefix(p, "/tmp/") {
			return fmt.Errorf("%w: scenario %q: file path %q must be a clean path under /tmp", ErrInvalid, s.Name, p)
		}
		if total += len(data); total > maxFilesSize {
			return fmt.Errorf("%w: scenario %q: files of more than %d bytes", ErrInvalid, s.Name, maxFilesSize)
		}
	}
	if t := s.Tap; t != nil {
		if t.Name == "" || len(t.Name) > 15 || strings.ContainsAny(t.Name, "/:% \t\n") {
			return fmt.Errorf("%w: scenario %q: tap name %q", ErrInvalid, s.Name, t.Name)
		}
		p, err := netip.ParsePrefix(t.Addr)
		if err != nil || !p.Addr().Is4() || !p.Addr().IsPrivate() {
			return fmt.Errorf("%w: scenario %q: tap address %q must be a private IPv4 CIDR", ErrInvalid, s.Name, t.Addr)
		}
		if t.Port < 1 || t.Port > 65535 || t.Port == 80 {
			return fmt.Errorf("%w: scenario %q: tap port %d", ErrInvalid, s.Name, t.Port)
		}
		if n := t.NetBoot; n != nil {
			c, err := netip.ParseAddr(n.Client)
			if err != nil || !p.Contains(c) || c == p.Addr() {
				return fmt.Errorf("%w: scenario %q: netboot client %q must be another address of %s", ErrInvalid, s.Name, n.Client, t.Addr)
			}
			if !path.IsAbs(n.Path) || path.Clean(n.Path) != n.Path || n.Path == "/" || strings.ContainsAny(n.Path, " ?#%") {
				return fmt.Errorf("%w: scenario %q: netboot path %q", ErrInvalid, s.Name, n.Path)
			}
			if len(n.Script) > maxFilesSize {
				return fmt.Errorf("%w: scenario %q: netboot script of %d bytes", ErrInvalid, s.Name, len(n.Script))
			}
		}
	}
	return nil
}

// AllFiles are Files and Blobs together, path -> content; a path in both
// keeps its Blob.
func (s Scenario) AllFiles() map[string][]byte {
	out := make(map[string][]byte, len(s.Files)+len(s.Blobs))
	for p, data := range s.Files {
		out[p] = []byte(data)
	}
	for p, data := range s.Blobs {
		out[p] = data
	}
	return out
}

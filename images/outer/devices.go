package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"golang.org/x/sys/unix"

	"github.com/vmmdev/vmm/images/grubdisk"
	"github.com/vmmdev/vmm/images/netboot"
	"github.com/vmmdev/vmm/images/pattern"
	"github.com/vmmdev/vmm/images/scenario"
	"github.com/vmmdev/vmm/storage/qcow2"
)

// maxTransfer bounds one peer transfer (the guest asks for the length).
const maxTransfer = 1 << 30

// peerIdle bounds how long a peer connection may stall.
const peerIdle = 60 * time.Second

// teardownLimit bounds finish: a stuck teardown must fail the run, not
// silence the outer machine.
const teardownLimit = 30 * time.Second

// setupDevices creates a scenario's disk images and tap (with its TCP
// peer). finish, called after the run, stops the peer and checks and
// removes the images; it returns what it found wrong. The tap stays, for the
// next scenario that names it: removing a tap waits in the kernel for every
// socket that ever routed through it, which can take minutes.
func setupDevices(s scenario.Scenario) (finish func() []string, err error) {
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	for p, data := range s.AllFiles() {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			cleanup()
			return nil, fmt.Errorf("scenario file: %w", err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			cleanup()
			return nil, fmt.Errorf("scenario file: %w", err)
		}
		undo = append(undo, func() { os.Remove(p) })
	}
	sums := make([][]byte, len(s.Disks))
	for i, d := range s.Disks {
		if err := writeImage(d); err != nil {
			cleanup()
			return nil, err
		}
		undo = append(undo, func() { os.Remove(d.Path) })
		if d.Unchanged {
			if sums[i], err = fileSHA256(d.Path); err != nil {
				cleanup()
				return nil, err
			}
		}
	}
	var peer *peer
	var boot *netboot.Server
	if t := s.Tap; t != nil {
		if err := createTap(t.Name, t.Addr); err != nil {
			cleanup()
			return nil, err
		}
		prefix, _ := netip.ParsePrefix(t.Addr) // validated with the scenario
		if peer, err = startPeer(netip.AddrPortFrom(prefix.Addr(), uint16(t.Port)), t.Name); err != nil {
			cleanup()
			return nil, err
		}
		undo = append(undo, peer.stop)
		if n := t.NetBoot; n != nil {
			lease := netboot.Lease{Server: prefix.Addr(), Client: netip.MustParseAddr(n.Client), Bits: prefix.Bits(),
				Bootfile: n.URL(prefix.Addr())}
			if boot, err = netboot.Start(t.Name, lease, n.Path, []byte(n.Script)); err != nil {
				cleanup()
				return nil, err
			}
			undo = append(undo, boot.Stop)
		}
	}
	return func() []string {
		done := make(chan []string, 1)
		go func() {
			var problems []string
			if peer != nil {
				peer.stop()
				problems = append(problems, peer.problems()...)
			}
			if boot != nil {
				boot.Stop()
				problems = append(problems, boot.Problems()...)
			}
			for i, d := range s.Disks {
				if err := verifyImage(d); err != nil {
					problems = append(problems, err.Error())
				}
				if sums[i] != nil {
					after, err := fileSHA256(d.Path)
					if err != nil {
						problems = append(problems, err.Error())
					} else if !bytes.Equal(after, sums[i]) {
						problems = append(problems, fmt.Sprintf("disk image %s: its file changed during the run (SHA-256 %x, was %x)", d.Path, after, sums[i]))
					}
				}
			}
			cleanup()
			done <- problems
		}()
		select {
		case p := <-done:
			return p
		case <-time.After(teardownLimit):
			return []string{fmt.Sprintf("device checks and teardown did not finish within %v", teardownLimit)}
		}
	}, nil
}

// writeImage creates d.Path holding d.Size bytes of stream d.Seed, or an
// ISO 9660 volume whose file d.ISOFile holds them.
func writeImage(d scenario.Disk) error {
	if d.ISOFile != "" {
		data := make([]byte, d.Size)
		pattern.Fill(data, d.Seed, 0)
		work, err := os.MkdirTemp(filepath.Dir(d.Path), ".iso-")
		if err != nil {
			return fmt.Errorf("disk image: %w", err)
		}
		defer os.RemoveAll(work)
		return grubdisk.WriteISO(d.Path, work, "VMMDATA", map[string][]byte{"/" + d.ISOFile: data}, nil)
	}
	if d.Format == "qcow2" {
		return writeQcow2(d)
	}
	f, err := os.OpenFile(d.Path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("disk image: %w", err)
	}
	if _, err := io.CopyBuffer(f, pattern.NewReader(d.Seed, d.Size), make([]byte, 1<<20)); err != nil {
		f.Close()
		return fmt.Errorf("disk image %s: %w", d.Path, err)
	}
	return f.Close()
}

// verifyImage checks that the image kept its size and holds stream
// d.WantSeed (in its file d.ISOFile, for an ISO image).
func verifyImage(d scenario.Disk) error {
	f, err := os.Open(d.Path)
	if err != nil {
		return fmt.Errorf("disk image after the run: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if d.Format == "qcow2" {
		f.Close() // the qcow2 reader opens (and locks) the file itself
		img, err := qcow2.Open(d.Path, true)
		if err != nil {
			return fmt.Errorf("disk image after the run: %w", err)
		}
		defer img.Close()
		r = io.NewSectionReader(img, 0, img.Size())
	}
	if d.ISOFile != "" {
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("disk image %s after the run: %w", d.Path, err)
		}
		fsys, err := iso9660.Read(file.New(f, true), fi.Size(), 0, 2048)
		if err != nil {
			return fmt.Errorf("disk image %s after the run: %w", d.Path, err)
		}
		if r, err = fsys.OpenFile("/"+d.ISOFile, os.O_RDONLY); err != nil {
			return fmt.Errorf("disk image %s after the run: %s: %w", d.Path, d.ISOFile, err)
		}
	}
	c := pattern.NewChecker(d.WantSeed)
	if _, err := io.CopyBuffer(c, r, make([]byte, 1<<20)); err != nil {
		return fmt.Errorf("disk image %s after the run: %w", d.Path, err)
	}
	n, bad := c.Result()
	switch {
	case n != d.Size:
		return fmt.Errorf("disk image %s is %d bytes after the run, want %d", d.Path, n, d.Size)
	case bad >= 0:
		return fmt.Errorf("disk image %s: byte %d differs from pattern %#x after the run", d.Path, bad, d.WantSeed)
	}
	return nil
}

// writeQcow2 creates d.Path as a qcow2 image whose virtual disk of d.Size
// bytes holds stream d.Seed.
func writeQcow2(d scenario.Disk) error {
	os.Remove(d.Path) // Create never overwrites
	if err := qcow2.Create(d.Path, d.Size, "", nil); err != nil {
		return fmt.Errorf("disk image: %w", err)
	}
	img, err := qcow2.Open(d.Path, false)
	if err != nil {
		return fmt.Errorf("disk image: %w", err)
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < d.Size; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), d.Size-off)]
		pattern.Fill(b, d.Seed, off)
		if _, err := img.WriteAt(b, off); err != nil {
			img.Close()
			return fmt.Errorf("disk image: %w", err)
		}
	}
	return img.Close()
}

// fileSHA256 is the SHA-256 of a file's bytes.
func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("disk image: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("disk image %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

// tunSetPersist is TUNSETPERSIST (_IOW('T', 203, int)).
const tunSetPersist = 0x400454cb

// setPersist attaches to tap name (creating it if needed) and sets its
// persistence, so that it outlives this descriptor.
func setPersist(name string, persist bool) error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/net/tun: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fmt.Errorf("TUNSETIFF %s: %w", name, err)
	}
	v := 0
	if persist {
		v = 1
	}
	if err := unix.IoctlSetInt(fd, tunSetPersist, v); err != nil {
		return fmt.Errorf("TUNSETPERSIST %s: %w", name, err)
	}
	return nil
}

// createTap makes a persistent tap for vmm to attach to, with addr on it, up.
func createTap(name, addr string) error {
	prefix, err := netip.ParsePrefix(addr)
	if err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	if err := setPersist(name, true); err != nil {
		return fmt.Errorf("create tap: %w", err)
	}
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("tap %s: socket: %w", name, err)
	}
	defer unix.Close(sock)
	set := func(req uint, ip netip.Addr) error {
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		a := ip.As4()
		if err := ifr.SetInet4Addr(a[:]); err != nil {
			return err
		}
		return unix.IoctlIfreq(sock, req, ifr)
	}
	mask := net.CIDRMask(prefix.Bits(), 32)
	maskAddr, _ := netip.AddrFromSlice(mask)
	if err := set(unix.SIOCSIFADDR, prefix.Addr()); err != nil {
		return fmt.Errorf("tap %s: set address: %w", name, err)
	}
	if err := set(unix.SIOCSIFNETMASK, maskAddr); err != nil {
		return fmt.Errorf("tap %s: set netmask: %w", name, err)
	}
	return setLinkUp(name, true)
}

// setLinkUp sets or clears an interface's IFF_UP.
func setLinkUp(name string, up bool) error {
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("tap %s: socket: %w", name, err)
	}
	defer unix.Close(sock)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(sock, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("tap %s: get flags: %w", name, err)
	}
	flags := ifr.Uint16() &^ unix.IFF_UP
	if up {
		flags |= unix.IFF_UP
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(sock, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("tap %s: set IFF_UP %v: %w", name, up, err)
	}
	return nil
}

// peer is the guest's TCP counterpart on the tap address.
type peer struct {
	ln     net.Listener
	tap    string
	wg     sync.WaitGroup
	once   sync.Once
	mu     sync.Mutex
	issues []string
}

func startPeer(at netip.AddrPort, tap string) (*peer, error) {
	ln, err := net.Listen("tcp4", at.String())
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	p := &peer{ln: ln, tap: tap}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *peer) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer closeConn(c)
			if err := serve(c, p.tap); err != nil {
				p.note(err.Error())
			}
		}()
	}
}

func (p *peer) note(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.issues = append(p.issues, "peer: "+s)
}

func (p *peer) stop() {
	p.once.Do(func() {
		p.ln.Close()
		p.wg.Wait()
	})
}

func (p *peer) problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issues
}

// closeConn ends a served connection: our side first (FIN after all data),
// then waits briefly for the guest to close its side, then resets, so that
// no socket is left retransmitting to a guest that has gone.
func closeConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		_ = tc.SetReadDeadline(time.Now().Add(peerLinger))
		_, _ = io.Copy(io.Discard, tc)
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// peerLinger is how long a finished connection waits for the guest's close.
const peerLinger = 5 * time.Second

// maxFlapHold bounds how long a link flap request holds the tap down.
const maxFlapHold = 10 * time.Second

// serve answers one connection of the protocol scenario.Tap describes, on
// tap.
func serve(c net.Conn, tap string) error {
	_ = c.SetDeadline(time.Now().Add(peerIdle))
	r := bufio.NewReader(c)
	var hdr [9]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	n := int64(binary.BigEndian.Uint64(hdr[1:]))
	if n < 0 || n > maxTransfer {
		return fmt.Errorf("request of %d bytes", n)
	}
	switch hdr[0] {
	case 'U':
		chk := pattern.NewChecker(scenario.UploadSeed)
		got, err := io.CopyN(chk, r, n)
		if err != nil {
			return fmt.Errorf("upload after %d bytes: %w", got, err)
		}
		reply := scenario.PeerOK
		if _, bad := chk.Result(); bad >= 0 {
			reply = scenario.PeerBad
		}
		_, err = io.WriteString(c, reply)
		return err
	case 'D':
		_, err := io.CopyBuffer(c, pattern.NewReader(scenario.DownloadSeed, n), make([]byte, 256<<10))
		return err
	case 'T':
		return scenario.ReceiveTimed(r, c, n)
	case 'R':
		return scenario.SendTimed(r, c, n)
	case 'L':
		hold := time.Duration(n) * time.Millisecond
		if hold <= 0 || hold > maxFlapHold {
			return fmt.Errorf("link flap of %v", hold)
		}
		if _, err := io.WriteString(c, scenario.PeerOK); err != nil {
			return err
		}
		// The hold is the outage the guest is to see, not a wait for
		// anything: the guest counts its carrier changes.
		if err := setLinkUp(tap, false); err != nil {
			return err
		}
		time.Sleep(hold)
		return setLinkUp(tap, true)
	}
	return errors.New("unknown request")
}

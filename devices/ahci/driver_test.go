package ahci

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vmmdev/vmm/devices/internal/blocktest"
	"github.com/vmmdev/vmm/devices/internal/fakeram"
	"github.com/vmmdev/vmm/storage/block"
	"github.com/vmmdev/vmm/storage/raw"
)

// fakeMem is guest RAM at [0, len).
type fakeMem = fakeram.RAM

// fakeMSI counts the messages sent and tells each one on ch (up to its
// buffer: tests that read ch send fewer).
type fakeMSI struct {
	mu   sync.Mutex
	sent int
	ch   chan struct{}
}

func (f *fakeMSI) SendMSI(v int, _, _, _ uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent++
	select {
	case f.ch <- struct{}{}:
	default:
	}
	return nil
}

func (f *fakeMSI) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent
}

// Guest memory layout of the test driver.
const (
	memSize = 16 << 20
	clbAt   = 0x10000 // + 0x400 per port
	fbAt    = 0x20000 // + 0x100 per port
	ctAt    = 0x40000 // command tables: + 0x1000 per port, + 0x80... per slot below
	dataAt  = 0x200000
	ctSize  = 0x1000 // per slot: FIS, CDB, up to 248 PRDs
)

// driver plays an AHCI host driver against an HBA in fake memory.
type driver struct {
	t     *testing.T
	h     *HBA
	mem   fakeMem
	msi   *fakeMSI
	paths []string
	imgs  []*raw.Image
	gates []*blocktest.Gate // per port, for specs with gated set
}

// spec describes one port's drive for newDriver.
type spec struct {
	cdrom    bool
	size     int
	fill     func(i int) byte
	readOnly bool
	serial   string
	gated    bool // reads go through a blocktest.Gate (driver.gates)
}

func newDriver(t *testing.T, specs ...spec) *driver {
	t.Helper()
	d := &driver{t: t, mem: make(fakeMem, memSize), msi: &fakeMSI{ch: make(chan struct{}, 64)}}
	var drives []Drive
	for i, s := range specs {
		if s.size == 0 {
			drives = append(drives, Drive{})
			d.paths = append(d.paths, "")
			d.imgs = append(d.imgs, nil)
			d.gates = append(d.gates, nil)
			continue
		}
		path := filepath.Join(t.TempDir(), fmt.Sprintf("port%d.img", i))
		b := make([]byte, s.size)
		if s.fill != nil {
			for j := range b {
				b[j] = s.fill(j)
			}
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		img, err := raw.Open(raw.Options{Path: path, ReadOnly: s.readOnly || s.cdrom}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { img.Close() })
		d.paths = append(d.paths, path)
		d.imgs = append(d.imgs, img)
		var dev block.Device = img
		var g *blocktest.Gate
		if s.gated {
			g = blocktest.New(img)
			dev = g
		}
		d.gates = append(d.gates, g)
		drives = append(drives, Drive{Image: dev, CDROM: s.cdrom, Serial: s.serial})
	}
	h, err := New(Config{Name: "ahci-test", Drives: drives, Mem: d.mem, MSI: d.msi})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	d.h = h
	// Enable MSI: the capability is the first one, at 0x40.
	d.cfgWrite(0x44, 0xfee00000)
	d.cfgWrite(0x48, 0)
	d.cfgWrite(0x4c, 0x4021)
	d.h.fn.WriteConfig(0x42, []byte{1, 0})
	return d
}

func (d *driver) cfgWrite(off uint64, v uint32) {
	d.h.fn.WriteConfig(off, binary.LittleEndian.AppendUint32(nil, v))
}

func (d *driver) rd(off uint64) uint32 {
	b := make([]byte, 4)
	d.h.read(off, b)
	return binary.LittleEndian.Uint32(b)
}

func (d *driver) wr(off uint64, v uint32) { d.h.write(off, binary.LittleEndian.AppendUint32(nil, v)) }

func preg(port int, r uint64) uint64 { return portBase + uint64(port)*portSize + r }

func (d *driver) prd(port int, r uint64) uint32 { return d.rd(preg(port, r)) }

func (d *driver) pwr(port int, r uint64, v uint32) { d.wr(preg(port, r), v) }

// start sets up a port as Linux does: command list and FIS area, FIS
// receive, every interrupt enabled, then ST.
func (d *driver) start(port int) {
	d.wr(regGHC, ghcAE|ghcIE)
	d.pwr(port, pxCLB, uint32(clbAt+port*0x400))
	d.pwr(port, pxCLBU, 0)
	d.pwr(port, pxFB, uint32(fbAt+port*0x100))
	d.pwr(port, pxFBU, 0)
	d.pwr(port, pxCMD, cmdFRE|cmdSUD|cmdPOD)
	d.pwr(port, pxSERR, 0xffffffff)
	d.pwr(port, pxIS, 0xffffffff)
	d.pwr(port, pxIE, ieMask)
	d.pwr(port, pxCMD, cmdFRE|cmdSUD|cmdPOD|cmdST)
}

// restart is the error recovery of AHCI 6.2.2: ST off and on again.
func (d *driver) restart(port int) {
	d.pwr(port, pxCMD, cmdFRE|cmdSUD|cmdPOD)
	d.pwr(port, pxIS, 0xffffffff)
	d.pwr(port, pxCMD, cmdFRE|cmdSUD|cmdPOD|cmdST)
}

type prdEnt struct {
	addr uint64
	n    uint32
}

// cmd is one command for issue.
type cmd struct {
	fis   []byte
	cdb   []byte
	prds  []prdEnt
	write bool
	atapi bool
}

func (d *driver) table(port, slot int) uint64 {
	return uint64(ctAt + port*numSlots*ctSize + slot*ctSize)
}

// place writes the command header and table of slot.
func (d *driver) place(port, slot int, c cmd) {
	hdr := d.mem[clbAt+port*0x400+slot*hdrSize:][:hdrSize]
	clear(hdr)
	dw0 := uint32(5) | uint32(len(c.prds))<<16
	if c.write {
		dw0 |= 1 << 6
	}
	if c.atapi {
		dw0 |= 1 << 5
	}
	binary.LittleEndian.PutUint32(hdr, dw0)
	binary.LittleEndian.PutUint64(hdr[8:], d.table(port, slot))
	tb := d.mem[d.table(port, slot):][:ctSize]
	clear(tb)
	copy(tb, c.fis)
	copy(tb[cdbOffset:], c.cdb)
	for i, p := range c.prds {
		e := tb[prdtOffset+i*prdEntrySize:]
		binary.LittleEndian.PutUint64(e, p.addr)
		binary.LittleEndian.PutUint32(e[12:], p.n-1)
	}
}

// issue runs one command in slot and waits for CI to clear or a task
// file error; it returns PxIS (then cleared).
func (d *driver) issue(port, slot int, c cmd) uint32 {
	d.t.Helper()
	d.place(port, slot, c)
	d.pwr(port, pxCI, 1<<slot)
	return d.wait(port, func() bool { return d.prd(port, pxCI)&(1<<slot) == 0 })
}

func (d *driver) wait(port int, done func() bool) uint32 {
	d.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !done() && d.prd(port, pxIS)&(isTFES|isHBFS|isHBDS) == 0 {
		if time.Now().After(deadline) {
			d.t.Fatalf("port %d: command did not complete (CI %#x, IS %#x)", port, d.prd(port, pxCI), d.prd(port, pxIS))
		}
		time.Sleep(100 * time.Microsecond)
	}
	is := d.prd(port, pxIS)
	d.pwr(port, pxIS, is)
	return is
}

func (d *driver) prdbc(port, slot int) uint32 {
	return binary.LittleEndian.Uint32(d.mem[clbAt+port*0x400+slot*hdrSize+4:])
}

func (d *driver) d2h(port int) []byte     { return d.mem[fbAt+port*0x100+rfisD2H:][:20] }
func (d *driver) pio(port int) []byte     { return d.mem[fbAt+port*0x100+rfisPIO:][:20] }
func (d *driver) sdb(port int) []byte     { return d.mem[fbAt+port*0x100+rfisSDB:][:8] }
func (d *driver) data(n int) []byte       { return d.mem[dataAt:][:n] }
func (d *driver) dataAt(at, n int) []byte { return d.mem[at:][:n] }

// ata builds a Register H2D FIS.
func ata(command byte, lba uint64, count uint16, feat uint16, device byte) []byte {
	f := make([]byte, 20)
	f[0], f[1], f[2] = fisH2D, 0x80, command
	f[3], f[11] = byte(feat), byte(feat>>8)
	f[4], f[5], f[6] = byte(lba), byte(lba>>8), byte(lba>>16)
	f[7] = device
	f[8], f[9], f[10] = byte(lba>>24), byte(lba>>32), byte(lba>>40)
	f[12], f[13] = byte(count), byte(count>>8)
	return f
}

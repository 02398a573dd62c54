package ahci

import (
	"encoding/binary"
	"errors"
)

// Command table layout.
const (
	fisMax       = 64
	cdbOffset    = 0x40
	prdtOffset   = 0x80
	prdEntrySize = 16
	// prdMaxBytes is the most one PRD entry describes (DBC is 22 bits).
	prdMaxBytes = 4 << 20
)

// errPRD is a PRD entry outside guest RAM: a host bus data error.
var errPRD = errors.New("ahci: PRD entry outside guest RAM")

// h2d is a Register Host-to-Device FIS.
type h2d struct {
	cmd    byte
	feat   uint16
	lba    uint64 // 48 bits
	device byte
	count  uint16
	ctl    byte
}

func parseH2D(f []byte) h2d {
	return h2d{cmd: f[2], feat: uint16(f[3]) | uint16(f[11])<<8, device: f[7], ctl: f[15],
		lba: uint64(f[4]) | uint64(f[5])<<8 | uint64(f[6])<<16 | uint64(f[8])<<24 |
			uint64(f[9])<<32 | uint64(f[10])<<40,
		count: uint16(f[12]) | uint16(f[13])<<8}
}

// command is one issued command: header, FIS and CDB copied out of guest
// memory (the guest may change them while the command runs), and the PRDT
// as the guest's view.
type command struct {
	mem  Memory
	hdr  cmdHeader
	cfis [fisMax]byte
	cdb  [16]byte
	f    h2d
	prdt []byte
}

// result is how a command ends: the D2H register FIS's contents and what
// the HBA reports besides.
type result struct {
	status, errReg byte
	lba            uint64
	count          uint16
	device         byte
	n              uint32 // bytes moved: PRDBC
	pio            bool   // a PIO data-in command: PIO Setup FIS first
	hostErr        uint32 // PxIS error bits of the HBA itself
	sig            bool   // the registers carry the device signature
	noFIS          bool   // no answer at all (SRST asserted)
}

func good() result  { return result{status: statOK} }
func abort() result { return result{status: statOK | statERR, errReg: errABRT} }

// buffers resolves the PRDT into host views covering up to need bytes, in
// order. It returns fewer bytes than need when the PRDT is shorter, and
// errPRD when an entry lies outside guest RAM. Each entry moves an even
// byte count (DBC bit 0 always counts as set) of at most 4 MiB.
func (c *command) buffers(need uint64) ([][]byte, uint64, error) {
	var bufs [][]byte
	var got uint64
	for i := 0; got < need && (i+1)*prdEntrySize <= len(c.prdt); i++ {
		e := c.prdt[i*prdEntrySize:]
		dba := binary.LittleEndian.Uint64(e) &^ 1
		n := uint64(binary.LittleEndian.Uint32(e[12:])&(prdMaxBytes-1)|1) + 1
		n = min(n, need-got)
		b, err := c.mem.Slice(dba, n)
		if err != nil {
			return nil, got, errPRD
		}
		bufs = append(bufs, b)
		got += n
	}
	return bufs, got, nil
}

// dataIn copies a device's answer into the PRDT, as much as fits.
func (c *command) dataIn(data []byte) (uint32, error) {
	bufs, _, err := c.buffers(uint64(len(data)))
	if err != nil {
		return 0, err
	}
	var n int
	for _, b := range bufs {
		n += copy(b, data[n:])
	}
	return uint32(n), nil
}

// dataOut gathers up to need bytes the guest sends.
func (c *command) dataOut(need uint64) ([]byte, error) {
	bufs, got, err := c.buffers(need)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, got)
	for _, b := range bufs {
		out = append(out, b...)
	}
	return out, nil
}

// hostError is the result of a PRD outside RAM.
func hostError() result {
	r := abort()
	r.hostErr = isHBDS
	return r
}

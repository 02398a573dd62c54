package mptable

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/layout"
)

// guestMem is a fake guest memory covering the first MiB.
type guestMem []byte

func (m guestMem) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, fmt.Errorf("write %d bytes at %#x: out of range", len(p), off)
	}
	return copy(m[off:], p), nil
}

type failingMem struct{}

var errFail = errors.New("fail")

func (failingMem) WriteAt([]byte, int64) (int, error) { return 0, errFail }

// parsed is what a guest OS reads back from the tables.
type parsed struct {
	cpus       []processor
	buses      map[byte]string
	ioapicID   byte
	ioapicAddr uint32
	ioapicVer  byte
	ioapicEn   bool
	ioIntrs    map[byte]byte // ISA IRQ -> IOAPIC pin
	ioIntrDst  []byte
	localIntrs map[byte]byte // interrupt type -> LINT pin
	lapicAddr  uint32
}

type processor struct {
	apicID, flags byte
	sig, features uint32
}

func sum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

// parse scans the BIOS area as Linux does (16-byte aligned "_MP_") and decodes
// the configuration table, checking every structural invariant.
func parse(t *testing.T, mem []byte) parsed {
	t.Helper()
	fpAt := -1
	for a := layout.MPTable; a+16 <= layout.MPTableEnd; a += 16 {
		if string(mem[a:a+4]) == "_MP_" {
			fpAt = a
			break
		}
	}
	require.GreaterOrEqual(t, fpAt, 0, "no _MP_ floating pointer in the BIOS area")
	fp := mem[fpAt : fpAt+16]
	require.Equal(t, byte(1), fp[8], "floating pointer length")
	require.Equal(t, byte(4), fp[9], "spec revision")
	require.Zero(t, sum(fp), "floating pointer checksum")
	require.Zero(t, fp[11], "feature byte 1: a configuration table follows")

	at := int(binary.LittleEndian.Uint32(fp[4:]))
	require.GreaterOrEqual(t, at, layout.MPTable)
	require.Less(t, at+headerSize, layout.MPTableEnd)
	hdr := mem[at : at+headerSize]
	require.Equal(t, "PCMP", string(hdr[0:4]))
	length := int(binary.LittleEndian.Uint16(hdr[4:]))
	require.LessOrEqual(t, at+length, layout.MPTableEnd)
	table := mem[at : at+length]
	require.Zero(t, sum(table), "configuration table checksum")
	require.Equal(t, byte(4), hdr[6])
	require.Equal(t, "VMMDEV  ", string(hdr[8:16]))
	require.Zero(t, binary.LittleEndian.Uint16(hdr[40:]), "no extended table")

	p := parsed{
		buses: map[byte]string{}, ioIntrs: map[byte]byte{}, localIntrs: map[byte]byte{},
		lapicAddr: binary.LittleEndian.Uint32(hdr[36:]),
	}
	count := int(binary.LittleEndian.Uint16(hdr[34:]))
	off := headerSize
	for i := range count {
		require.Less(t, off, length, "entry %d starts past the table", i)
		e := table[off:]
		switch e[0] {
		case entryProcessor:
			require.GreaterOrEqual(t, len(e), processorSize)
			p.cpus = append(p.cpus, processor{e[1], e[3], binary.LittleEndian.Uint32(e[4:]), binary.LittleEndian.Uint32(e[8:])})
			require.Equal(t, byte(lapicVersion), e[2])
			off += processorSize
			continue
		case entryBus:
			p.buses[e[1]] = string(e[2:8])
		case entryIOAPIC:
			p.ioapicID, p.ioapicVer, p.ioapicEn = e[1], e[2], e[3]&1 == 1
			p.ioapicAddr = binary.LittleEndian.Uint32(e[4:])
		case entryIOIntr:
			require.Equal(t, byte(intINT), e[1])
			require.NotContains(t, p.ioIntrs, e[5], "IRQ %d routed twice", e[5])
			p.ioIntrs[e[5]] = e[7]
			p.ioIntrDst = append(p.ioIntrDst, e[6])
		case entryLocalIntr:
			require.Equal(t, byte(allLAPICs), e[6], "local interrupt goes to all CPUs")
			p.localIntrs[e[1]] = e[7]
		default:
			t.Fatalf("unknown entry type %d at offset %d", e[0], off)
		}
		off += entrySize
	}
	require.Equal(t, length, off, "entries fill the table exactly")
	return p
}

func TestWrite(t *testing.T) {
	for _, cpus := range []int{1, 2, 4, 64, MaxCPUs} {
		t.Run(fmt.Sprint(cpus), func(t *testing.T) {
			mem := make(guestMem, layout.HighMemory)
			require.NoError(t, Write(mem, cpus))
			p := parse(t, mem)

			require.Len(t, p.cpus, cpus)
			for i, c := range p.cpus {
				assert.Equal(t, byte(i), c.apicID)
				want := byte(cpuEnabled)
				if i == 0 {
					want |= cpuBSP
				}
				assert.Equal(t, want, c.flags, "cpu %d flags", i)
				assert.Equal(t, uint32(0x600), c.sig)
				assert.NotZero(t, c.features&(1<<9), "APIC feature flag")
			}
			assert.Equal(t, map[byte]string{0: "ISA   "}, p.buses)
			assert.Equal(t, byte(cpus), p.ioapicID)
			assert.Equal(t, byte(0x11), p.ioapicVer)
			assert.True(t, p.ioapicEn)
			assert.Equal(t, uint32(layout.IOAPICBase), p.ioapicAddr)
			assert.Equal(t, uint32(layout.LAPICBase), p.lapicAddr)

			wantIRQ := map[byte]byte{0: 2}
			for irq := byte(1); irq < 16; irq++ {
				if irq != 2 {
					wantIRQ[irq] = irq
				}
			}
			assert.Equal(t, wantIRQ, p.ioIntrs)
			for _, d := range p.ioIntrDst {
				assert.Equal(t, byte(cpus), d, "I/O interrupt destination is the IOAPIC")
			}
			assert.Equal(t, map[byte]byte{intExtINT: 0, intNMI: 1}, p.localIntrs)
			assert.Equal(t, Size(cpus), 16+int(binary.LittleEndian.Uint16(mem[layout.MPTable+16+4:])))
		})
	}
}

func TestWriteErrors(t *testing.T) {
	mem := make(guestMem, layout.HighMemory)
	for _, cpus := range []int{-1, 0, MaxCPUs + 1, 1000} {
		assert.ErrorIs(t, Write(mem, cpus), ErrCPUs, "cpus %d", cpus)
	}
	assert.Zero(t, sum(mem), "nothing written on error")
	assert.ErrorIs(t, Write(failingMem{}, 1), errFail)
	assert.Error(t, Write(make(guestMem, layout.MPTable+100), 2), "short memory")
	assert.LessOrEqual(t, layout.MPTable+Size(MaxCPUs), layout.MPTableEnd, "the largest table fits")
}

func FuzzBuild(f *testing.F) {
	for _, n := range []int{-1, 0, 1, 2, 254, 255} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, cpus int) {
		b, err := Build(cpus)
		if err != nil {
			if cpus >= 1 && cpus <= MaxCPUs {
				t.Fatalf("Build(%d): %v", cpus, err)
			}
			return
		}
		if len(b) != Size(cpus) || sum(b[:16]) != 0 || sum(b[16:]) != 0 {
			t.Fatalf("Build(%d): %d bytes, checksums %d %d", cpus, len(b), sum(b[:16]), sum(b[16:]))
		}
	})
}

package exitbench

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestELF: one loadable segment at 1 MiB opening with a valid multiboot
// header, entered right after it, and ending below the guest's data.
func TestELF(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(ELF()))
	require.NoError(t, err)
	require.Equal(t, elf.ELFCLASS32, f.Class)
	require.Equal(t, elf.EM_386, f.Machine)
	require.Equal(t, uint64(loadAddr+16), f.Entry)
	require.Len(t, f.Progs, 1)
	p := f.Progs[0]
	require.Equal(t, uint64(loadAddr), p.Paddr)
	require.Less(t, p.Paddr+p.Memsz, uint64(idtAddr), "code runs into the IDT")
	require.Less(t, p.Off, uint64(8192), "multiboot wants its header in the first 8 KiB")
	seg := make([]byte, p.Filesz)
	_, err = p.ReadAt(seg, 0)
	require.NoError(t, err)
	le := binary.LittleEndian
	magic, flags, sum := le.Uint32(seg), le.Uint32(seg[4:]), le.Uint32(seg[8:])
	require.Equal(t, uint32(0x1badb002), magic)
	require.Zero(t, magic+flags+sum)
	require.Zero(t, flags&(1<<16), "no address fields: loaders read the ELF")
	require.Equal(t, []byte{0xbc}, seg[16:17], "entry sets the stack first")
}

// TestCodeNamesEveryRow: each row prints its name, in Rows' order.
func TestCodeNamesEveryRow(t *testing.T) {
	c := string(code())
	at := -1
	for _, r := range Rows {
		// print emits "mov al, c; out dx, al" per byte.
		var enc []byte
		for _, ch := range []byte(Line + " " + r.Name + " ") {
			enc = append(enc, 0xb0, ch, 0xee)
		}
		i := strings.Index(c, string(enc))
		require.Greater(t, i, at, r.Name)
		at = i
	}
}

func TestAsmFixups(t *testing.T) {
	a := newAsm(0x1000).label("top").emit(0x90).j(0x75, "top").near("end", 0xe8).emit(0xb8).addr("end").label("end")
	require.Equal(t, []byte{0x90, 0x75, 0xfd, 0xe8, 5, 0, 0, 0, 0xb8, 0x0d, 0x10, 0, 0}, a.bytes())
	require.Panics(t, func() { newAsm(0).j(0xeb, "nowhere").bytes() })
	far := newAsm(0).label("x").emit(make([]byte, 200)...).j(0xeb, "x")
	require.Panics(t, func() { far.bytes() })
}

func TestParse(t *testing.T) {
	cycles, done := Parse([]string{
		"SeaBIOS (version 1.16)",
		"EXITBENCH cpuid 1200 1000",
		"EXITBENCH cpuid 1100 1100\r",
		"EXITBENCH pio 99999999999 1000", // out of range: dropped
		"EXITBENCH mmio x 1000",
		"EXITBENCH mmio 3000 0", // no pace: dropped
		"EXITBENCH ipi 3000",
		"EXITBENCH ipi 3000 1000 extra",
		"noise EXITBENCH pio 4000 2000",
		"EXITBENCH unexpected interrupt",
	})
	require.False(t, done)
	require.Equal(t, map[string][]Batch{"cpuid": {{1200, 1000}, {1100, 1100}}, "pio": {{4000, 2000}}}, cycles)
	require.Equal(t, 2.0, cycles["pio"][0].Paced())
	_, done = Parse([]string{"EXITBENCH done"})
	require.True(t, done)
}

func TestArgs(t *testing.T) {
	v := VMMArgs("/tmp/g.elf", "60s", "all")
	require.Equal(t, "run", v[0])
	for _, want := range []string{"--testdev", "/tmp/g.elf", "60s"} {
		require.Contains(t, v, want)
	}
	require.Equal(t, "all", v[slices.Index(v, "--hyperv")+1])
	q := QEMUArgs("/tmp/g.elf", "/bios.bin", "host,hv-stimer")
	require.Equal(t, "host,hv-stimer", q[slices.Index(q, "-cpu")+1])
	require.Equal(t, "/tmp/g.elf", q[slices.Index(q, "-kernel")+1])
	require.Contains(t, q, "pc-testdev")
	require.Contains(t, q, "isa-debug-exit,iobase=0xf4,iosize=0x04")
}

// TestWaitsUntilAtLeast: every wait loop is "cmp [count], esi; jl", never
// jne, which would spin forever once two expiries came at once.
func TestWaitsUntilAtLeast(t *testing.T) {
	c := code()
	cmp := append([]byte{0x39, 0x35}, binary.LittleEndian.AppendUint32(nil, countAddr)...)
	n := 0
	for i := bytes.Index(c, cmp); i >= 0; {
		require.Equal(t, byte(0x7c), c[i+len(cmp)], "wait at %#x", i)
		n++
		j := bytes.Index(c[i+1:], cmp)
		if j < 0 {
			break
		}
		i += 1 + j
	}
	require.Equal(t, 6, n, "one wait per interrupt row (ipi and five stimer rows)")
}

// FuzzParse: a guest's console is hostile input; whatever Parse keeps is a
// batch with a pace to divide by.
func FuzzParse(f *testing.F) {
	f.Add("EXITBENCH pio 4000 2000\nEXITBENCH done")
	f.Add("EXITBENCH cpuid 0 0\nEXITBENCH mmio 4294967295 1")
	f.Add("noise EXITBENCH ipi 1 1 1\r\nEXITBENCH  done ")
	f.Fuzz(func(t *testing.T, console string) {
		batches, _ := Parse(strings.Split(console, "\n"))
		for row, bs := range batches {
			for _, b := range bs {
				if b.Pace <= 0 || b.Cycles < 0 || b.Cycles > 1<<32 || b.Pace > 1<<32 {
					t.Fatalf("row %q kept %+v", row, b)
				}
			}
		}
	})
}

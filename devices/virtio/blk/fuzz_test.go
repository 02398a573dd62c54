package blk

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzProcess feeds arbitrary chains to a small disk: the first byte of each
// descriptor record is its length and direction, the rest its contents.
// Whatever the chain, Process must not panic, must report no more bytes than
// the writable buffers hold, and the image must keep its size.
func FuzzProcess(f *testing.F) {
	f.Add(append(append([]byte{16}, header(TypeIn, 1)...), 0x80|32, 0x81))
	f.Add(append(append(append([]byte{16}, header(TypeOut, 0)...), 32), make([]byte, 32)...))
	f.Add(append(append(append([]byte{16}, header(TypeDiscard, 0)...), 16), spans(span{1, 2, 0})...))
	f.Add(append(append(append([]byte{16}, header(TypeWriteZeroes, 7)...), 16), spans(span{0, 8, 1})...))
	f.Add(append(append([]byte{16}, header(TypeGetID, 0)...), 0x80|21))
	f.Add(append([]byte{16}, header(TypeFlush, 0)...))
	path := filepath.Join(f.TempDir(), "fuzz.img")
	if err := os.WriteFile(path, make([]byte, 8*SectorSize), 0o600); err != nil {
		f.Fatal(err)
	}
	d, err := Open(Options{Path: path, Serial: "fuzz"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { d.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		var chain []Segment
		total := uint64(0)
		for len(in) > 0 && len(chain) < 16 {
			n := int(in[0] & 0x7f)
			if n == 0x7f {
				n = 2 * SectorSize // whole sectors are reachable too
			}
			s := Segment{Buf: make([]byte, n), Writable: in[0]&0x80 != 0}
			in = in[1:]
			in = in[copy(s.Buf, in):]
			if s.Writable {
				total += uint64(n)
			}
			chain = append(chain, s)
		}
		if got := d.Process(chain); uint64(got) > total {
			t.Fatalf("reported %d bytes written into %d writable bytes", got, total)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Size() != 8*SectorSize {
			t.Fatalf("image size changed: %v %v", fi, err)
		}
	})
}

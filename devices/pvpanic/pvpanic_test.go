package pvpanic

import (
	"bytes"
	"testing"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name              string
		off               uint64
		data              []byte
		panics, crashLoad int
	}{
		{"panicked", 0, []byte{Panicked}, 1, 0},
		{"crash loaded", 0, []byte{CrashLoaded}, 0, 1},
		{"both: panic wins", 0, []byte{Panicked | CrashLoaded}, 1, 0},
		{"unsupported bits", 0, []byte{0xfc}, 0, 0},
		{"zero", 0, []byte{0}, 0, 0},
		{"wide write uses the low byte", 0, []byte{CrashLoaded, Panicked}, 0, 1},
		{"other offset", 1, []byte{Panicked}, 0, 0},
		{"empty", 0, nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var panics, crashLoad int
			d := New(func() { panics++ }, func() { crashLoad++ })
			d.Write(tt.off, tt.data)
			if panics != tt.panics || crashLoad != tt.crashLoad {
				t.Fatalf("panicked %d crashLoaded %d, want %d %d", panics, crashLoad, tt.panics, tt.crashLoad)
			}
		})
	}
}

func TestRead(t *testing.T) {
	d := New(nil, nil)
	data := []byte{0, 0}
	d.Read(0, data)
	if !bytes.Equal(data, []byte{Panicked | CrashLoaded, 0xff}) {
		t.Fatalf("read %x", data)
	}
	d.Read(1, data[:1])
	if data[0] != 0xff {
		t.Fatalf("read at offset 1 = %#x", data[0])
	}
	d.Write(0, []byte{Panicked | CrashLoaded}) // nil callbacks: no panic
}

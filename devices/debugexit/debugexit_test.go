package debugexit

import (
	"bytes"
	"testing"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name   string
		off    uint64
		data   []byte
		called bool
		want   uint32
	}{
		{"byte", 0, []byte{0x10}, true, 0x10},
		{"zero", 0, []byte{0}, true, 0},
		{"word", 0, []byte{0x34, 0x12}, true, 0x1234},
		{"dword", 0, []byte{0x78, 0x56, 0x34, 0x12}, true, 0x12345678},
		{"qword ignored", 0, make([]byte, 8), false, 0},
		{"empty ignored", 0, nil, false, 0},
		{"other offset ignored", 1, []byte{1}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint32
			p := New(func(v uint32) { got = append(got, v) })
			p.Write(tt.off, tt.data)
			if tt.called != (len(got) == 1) || len(got) > 1 || (tt.called && got[0] != tt.want) {
				t.Fatalf("exit calls %#x, want called=%v value %#x", got, tt.called, tt.want)
			}
		})
	}
}

func TestReadAllOnes(t *testing.T) {
	p := New(func(uint32) { t.Fatal("read must not exit") })
	data := []byte{0, 1, 2, 3}
	p.Read(0, data)
	if !bytes.Equal(data, []byte{0xff, 0xff, 0xff, 0xff}) {
		t.Fatalf("read %x", data)
	}
}

func TestNilExit(t *testing.T) {
	New(nil).Write(0, []byte{1}) // must not panic
}

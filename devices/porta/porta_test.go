package porta

import "testing"

func TestPortA(t *testing.T) {
	resets := 0
	p := New(func() { resets++ })
	b := []byte{0xff, 0xff}
	p.Read(0, b)
	if b[0] != bitA20 || b[1] != 0 {
		t.Fatalf("read %#x, want A20 on and nothing else", b)
	}
	p.Write(0, []byte{bitA20})
	if resets != 0 {
		t.Fatal("writing the A20 bit reset the machine")
	}
	p.Write(0, []byte{bitReset | bitA20})
	p.Write(0, nil)
	if resets != 1 {
		t.Fatalf("%d resets, want 1", resets)
	}
}

package debugcon

import (
	"bytes"
	"testing"
)

func TestCon(t *testing.T) {
	var out bytes.Buffer
	c := New(&out)
	for _, b := range []byte("hi\n") {
		c.Write(0, []byte{b})
	}
	c.Write(0, []byte{'!', 'x'})
	if out.String() != "hi\n!" {
		t.Fatalf("output %q", out.String())
	}
	r := []byte{0}
	c.Read(0, r)
	if r[0] != readback {
		t.Fatalf("read %#x", r[0])
	}
}

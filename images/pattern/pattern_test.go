package pattern

import (
	"bytes"
	"io"
	"testing"
)

func TestRangesAgree(t *testing.T) {
	whole := make([]byte, 1000)
	Fill(whole, 7, 0)
	part := make([]byte, 333)
	Fill(part, 7, 13)
	if !bytes.Equal(part, whole[13:346]) {
		t.Fatal("a range differs from the same bytes of the whole stream")
	}
	other := make([]byte, 1000)
	Fill(other, 8, 0)
	if bytes.Equal(whole, other) {
		t.Fatal("seeds 7 and 8 give the same stream")
	}
	if got := Mismatch(whole[100:], 7, 100); got != -1 {
		t.Fatalf("Mismatch on matching data = %d", got)
	}
	whole[500] ^= 1
	if got := Mismatch(whole, 7, 0); got != 500 {
		t.Fatalf("Mismatch = %d, want 500", got)
	}
}

func TestReaderAndChecker(t *testing.T) {
	c := NewChecker(3)
	n, err := io.CopyBuffer(c, NewReader(3, 300000), make([]byte, 4097))
	if err != nil || n != 300000 {
		t.Fatalf("copied %d, %v", n, err)
	}
	if got, bad := c.Result(); got != 300000 || bad != -1 {
		t.Fatalf("checker: %d bytes, first bad %d", got, bad)
	}
	c = NewChecker(4)
	io.Copy(c, NewReader(3, 100))
	if _, bad := c.Result(); bad != 0 {
		t.Fatalf("wrong seed: first bad %d, want 0", bad)
	}
}

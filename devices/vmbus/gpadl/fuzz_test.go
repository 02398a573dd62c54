package gpadl

import "testing"

// FuzzMessages feeds a header and bodies cut from fuzzer bytes: nothing
// may panic, and the table's accounting must stay within its limits and
// consistent.
func FuzzMessages(f *testing.F) {
	f.Add(header(1, 2, 30, 26, 0), body(2, 26, 4), uint8(3))
	f.Add(header(1, 2, 1, 1, 0), []byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, h, b []byte, cut uint8) {
		l := Limits{Count: 4, TotalPages: 200}
		tb := New(ram, l)
		tb.Header(h)
		for len(b) > 0 {
			n := min(len(b), BodyFixed+8*int(cut%40))
			tb.Body(b[:n])
			b = b[n:]
		}
		tb.Header(h)
		if tb.Len() > l.Count || tb.Pages() > l.TotalPages || tb.Pages() < 0 {
			t.Fatalf("%d GPADLs, %d pages", tb.Len(), tb.Pages())
		}
		for _, g := range tb.complete {
			if len(g.PFNs) != cap(g.PFNs) {
				t.Fatal("complete GPADL with PFNs missing")
			}
		}
		tb.Reset()
		if tb.Pages() != 0 {
			t.Fatal("pages after reset")
		}
	})
}

package irq

import "testing"

func TestLineFunc(t *testing.T) {
	var got []bool
	var l Line = LineFunc(func(high bool) { got = append(got, high) })
	l.SetLevel(true)
	l.SetLevel(false)
	if len(got) != 2 || !got[0] || got[1] {
		t.Fatalf("levels %v, want [true false]", got)
	}
}

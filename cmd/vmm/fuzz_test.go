package main

import (
	"strings"
	"testing"
)

// FuzzParseSize: --memory (and the config file's "memory") is user input.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512", "512M", "2GiB", "64K", "1T", "4MB", "", "M", "-1", "1.5G", "99999999999999T", " 8 G", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("%q: error with size %d", s, n)
			}
			if !strings.Contains(err.Error(), "size") && !strings.Contains(err.Error(), "large") {
				t.Fatalf("%q: unclear error %v", s, err)
			}
			return
		}
		if strings.TrimSpace(s) == "" {
			t.Fatalf("%q accepted", s)
		}
	})
}

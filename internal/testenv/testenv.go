// Package testenv is how a test says that what it needs is missing from
// this machine: loudly, and never under CI=true, where CI must have
// installed it (a skip there would hide a missing setup step).
package testenv

import (
	"os"
	"testing"
)

// Skip skips t with a loud message, or fails it when CI=true.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, so this test may not skip: "+format, args...)
	}
	t.Skipf("!!! SKIPPED: "+format+" !!!", args...)
}

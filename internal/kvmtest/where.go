package kvmtest

import (
	"fmt"
	"os"
)

// TestPrefix begins the name of every host KVM test (a top-level test that
// calls Require): images/cmd/kvmexec finds them by it and runs them where
// KVM is, the rest of their package where it was started.
const TestPrefix = "TestKVM"

// EnvWhere names the environment variable that says where host KVM tests
// run: "local" (this host's /dev/kvm), "nested" (the nested test host) or
// "auto" / unset (local where /dev/kvm is hardware virtualization, nested
// elsewhere).
const EnvWhere = "VMM_TEST_KVM"

// Where is a place host KVM tests run.
type Where string

// The values of EnvWhere.
const (
	Auto   Where = "auto"
	Local  Where = "local"
	Nested Where = "nested"
)

// WhereFromEnv reads EnvWhere.
func WhereFromEnv() (Where, error) {
	switch v := Where(os.Getenv(EnvWhere)); v {
	case "", Auto:
		return Auto, nil
	case Local, Nested:
		return v, nil
	default:
		return "", fmt.Errorf("%s=%q: want %s, %s or %s", EnvWhere, v, Local, Nested, Auto)
	}
}

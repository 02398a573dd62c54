package kvm

import (
	"bufio"
	"bytes"
	"github.com/vmmdev/vmm/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestABIMatchesCHeaders compiles testdata/abi.c against the host's
// <linux/kvm.h> and checks every number it prints against the Go structs and
// ioctl constants, so a header change is caught where one is installed.
func TestABIMatchesCHeaders(t *testing.T) {
	cc, err := exec.LookPath("gcc")
	if err != nil {
		testenv.Skip(t, "gcc not installed; the pinned numbers in layout_test.go still apply")
	}
	if _, err := os.Stat("/usr/include/linux/kvm.h"); err != nil {
		testenv.Skip(t, "no /usr/include/linux/kvm.h (linux-libc-dev); the pinned numbers in layout_test.go still apply")
	}
	bin := filepath.Join(t.TempDir(), "abi")
	if out, err := exec.Command(cc, "-Wall", "-Werror", "-o", bin, "testdata/abi.c").CombinedOutput(); err != nil {
		t.Fatalf("compile abi.c: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("run abi: %v", err)
	}
	got := goABI()
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("malformed line %q", line)
		}
		name := line[:i]
		want, err := strconv.ParseUint(line[i+1:], 0, 64)
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		seen++
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: no Go counterpart", name)
			continue
		}
		if uint64(g) != want {
			t.Errorf("%s: Go %d (%#x), C %d (%#x)", name, g, g, want, want)
		}
	}
	if seen != len(got) {
		t.Errorf("abi.c printed %d values, Go has %d", seen, len(got))
	}
}

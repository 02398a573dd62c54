package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ErrStepTimeout marks an external step that ran past its deadline.
var ErrStepTimeout = errors.New("step timed out")

// step runs one external command with a deadline and returns its stdout. The
// error names the step and carries the tail of stderr, so a failure in CI
// says which step broke and why.
type step struct {
	name    string // what the step does, for errors: "apt-get download"
	timeout time.Duration
	dir     string
	env     []string // added to the environment
	// combined puts stdout into the error's tail too: build tools (ninja,
	// configure) print the reason for a failure on stdout.
	combined bool
}

func (s step) run(ctx context.Context, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = s.dir
	// A killed step's children (apt's download methods) may keep its pipes
	// open; do not wait on them for long.
	cmd.WaitDelay = 5 * time.Second
	if len(s.env) > 0 {
		cmd.Env = append(os.Environ(), s.env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if s.combined {
		cmd.Stdout = &stderr
	}
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, fmt.Errorf("%s: %w after %v (%s)", s.name, ErrStepTimeout, s.timeout, strings.Join(argv, " "))
	}
	if err != nil {
		return nil, fmt.Errorf("%s (%s): %w: %s", s.name, strings.Join(argv, " "), err, tail(stderr.String(), 2000))
	}
	return stdout.Bytes(), nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

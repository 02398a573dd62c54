package testhost

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockName is the lock file, in the artifact directory, that serialises
// outer boots: they share outer.cpio.gz, and two TCG machines on one host
// slow each other into timeouts.
const lockName = "nested-host.lock"

// lockHost takes the exclusive lock in dir, waiting for other holders
// until ctx ends; waiting is reported through waiting.
func lockHost(ctx context.Context, dir string, waiting func(path string)) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock dir: %w", err)
	}
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		return func() { f.Close() }, nil
	}
	waiting(path)
	// A blocking flock cannot be cancelled: it runs aside, and a late grant
	// after ctx ended is released at once.
	got := make(chan error, 1)
	go func() { got <- unix.Flock(int(f.Fd()), unix.LOCK_EX) }()
	select {
	case err := <-got:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return func() { f.Close() }, nil
	case <-ctx.Done():
		go func() {
			<-got
			f.Close()
		}()
		return nil, fmt.Errorf("waiting for %s: %w", path, ctx.Err())
	}
}

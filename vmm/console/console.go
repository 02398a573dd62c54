// Package console is the host side of the guest's serial console: standard
// output (with the terminal in raw mode when stdin is one), a file, or nothing.
package console

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// escapeByte is Ctrl-A; Ctrl-A x ends the VM from a raw terminal (as QEMU's -nographic).
const escapeByte = 0x01

// Console is an opened console spec.
type Console struct {
	out      io.Writer
	in       io.Reader
	file     *os.File
	tty      int
	saved    *unix.Termios
	closeOne sync.Once
}

// Open parses spec (stdio, file:PATH or none) and opens it. With stdio and a
// terminal on stdin, the terminal is put in raw mode until Close; without a
// terminal, stdin is not read at all, so a CI job's stdin never matters.
func Open(spec string, stdin *os.File, stdout io.Writer) (*Console, error) {
	c := &Console{tty: -1}
	switch {
	case spec == "none":
		c.out = io.Discard
	case spec == "stdio":
		c.out = stdout
		if stdin != nil && isTerminal(int(stdin.Fd())) {
			if err := c.makeRaw(int(stdin.Fd())); err != nil {
				return nil, err
			}
			c.in = &escapeReader{r: stdin}
		}
	case strings.HasPrefix(spec, "file:"):
		path := strings.TrimPrefix(spec, "file:")
		if path == "" {
			return nil, errors.New("file: needs a path (file:PATH)")
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open console file: %w", err)
		}
		c.file, c.out = f, f
	default:
		return nil, fmt.Errorf("%q is not stdio, file:PATH or none", spec)
	}
	return c, nil
}

// Out is where guest console output goes.
func (c *Console) Out() io.Writer { return c.out }

// In is host input for the guest, or nil.
func (c *Console) In() io.Reader {
	if c.in == nil {
		return nil
	}
	return c.in
}

// Close restores the terminal and closes a console file. Idempotent.
func (c *Console) Close() error {
	var err error
	c.closeOne.Do(func() {
		if c.saved != nil {
			err = unix.IoctlSetTermios(c.tty, unix.TCSETS, c.saved)
		}
		if c.file != nil {
			err = errors.Join(err, c.file.Close())
		}
	})
	return err
}

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// makeRaw puts the terminal in raw mode (as cfmakeraw), keeping output
// post-processing so the guest's "\n" still returns the carriage.
func (c *Console) makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("read terminal settings: %w", err)
	}
	saved := *t
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("set terminal raw mode: %w", err)
	}
	c.tty, c.saved = fd, &saved
	return nil
}

// escapeReader passes input through, except that Ctrl-A x asks the VMM to
// stop (SIGTERM to itself, handled like any other termination request) and
// Ctrl-A Ctrl-A sends one Ctrl-A.
type escapeReader struct {
	r       io.Reader
	pending bool
}

func (e *escapeReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	out := p[:0]
	for _, b := range p[:n] {
		switch {
		case e.pending:
			e.pending = false
			if b == 'x' || b == 'X' {
				_ = unix.Kill(unix.Getpid(), unix.SIGTERM)
				continue
			}
			out = append(out, b)
		case b == escapeByte:
			e.pending = true
		default:
			out = append(out, b)
		}
	}
	return len(out), err
}

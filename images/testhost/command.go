package testhost

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmmdev/vmm/images"
)

// CommandEnv is what the command-line front ends of the nested test host
// (nested, bench) share: the images config with a logger, a context that
// SIGINT/SIGTERM cancel, and the optional log of the outer console.
type CommandEnv struct {
	Ctx     context.Context
	Config  images.Config
	Console io.Writer // nil without a console log
	close   func()
}

// NewCommandEnv sets up a front end's environment: out is the artifact
// directory, verbose logs the image builds, consoleLog (if set) receives the
// outer machine's whole console. Close releases it.
func NewCommandEnv(out string, verbose bool, consoleLog string, stderr io.Writer) (*CommandEnv, error) {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	cfg := images.Config{Out: out, Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))}
	var console io.Writer
	var f *os.File
	if consoleLog != "" {
		var err error
		if f, err = os.Create(consoleLog); err != nil {
			return nil, fmt.Errorf("console log: %w", err)
		}
		console = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	return &CommandEnv{Ctx: ctx, Config: cfg, Console: console, close: func() {
		stop()
		if f != nil {
			f.Close()
		}
	}}, nil
}

// Close stops the signal handling and closes the console log.
func (e *CommandEnv) Close() { e.close() }

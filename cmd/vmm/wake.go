package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmmdev/vmm/vmm"
)

// wakeOnSignal makes SIGUSR1 the host's wake event for a guest suspended
// to RAM (ACPI S3), as pressing the power button: PWRBTN_STS, and a wake.
// A guest that is not asleep only gets the status bit.
func wakeOnSignal(m *vmm.Machine, log *slog.Logger) (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-sigs:
				if !m.Wake() {
					log.Info("SIGUSR1: the guest is not suspended to RAM; nothing to wake")
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
	}
}

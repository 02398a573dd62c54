package vmm

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/devices/vmbus/ic"
)

// The run loop's answer to the first signal: without a graceful path the
// run stops as interrupted at once; with one it waits for the guest's own
// poweroff, up to the grace period; the run's timeout still applies.
func TestStopWaitSignal(t *testing.T) {
	cancelled := func() context.Context {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(errors.New("terminated"))
		return ctx
	}

	l := newStopLatch()
	l.wait(cancelled(), nil, 0, nil)
	require.Equal(t, StopInterrupted, l.Reason().Kind)
	require.Equal(t, "terminated", l.Reason().Detail)
	require.Equal(t, ExitInterrupted, l.Reason().ExitCode())

	// No shutdown channel: as without one.
	l = newStopLatch()
	var asked []string
	l.wait(cancelled(), nil, 0, func(c string) (time.Duration, bool) { asked = append(asked, c); return 0, false })
	require.Equal(t, StopInterrupted, l.Reason().Kind)
	require.Equal(t, []string{"terminated"}, asked)

	// The guest powers off after the request: exit 0.
	l = newStopLatch()
	l.wait(cancelled(), nil, 0, func(string) (time.Duration, bool) {
		go l.Stop(StopReason{Kind: StopPowerOff, Source: "acpi"})
		return time.Hour, true
	})
	require.Equal(t, StopPowerOff, l.Reason().Kind)
	require.Equal(t, ExitPowerOff, l.Reason().ExitCode())

	// The guest ignores it: the hard stop after the grace period.
	l = newStopLatch()
	start := time.Now()
	l.wait(cancelled(), nil, 0, func(string) (time.Duration, bool) { return 50 * time.Millisecond, true })
	require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
	require.Equal(t, StopInterrupted, l.Reason().Kind)
	require.Contains(t, l.Reason().Detail, "did not power off within 50ms")

	// The run's timeout fires during the grace period.
	l = newStopLatch()
	timeout := make(chan time.Time, 1)
	l.wait(cancelled(), timeout, time.Minute, func(string) (time.Duration, bool) {
		timeout <- time.Now()
		return time.Hour, true
	})
	require.Equal(t, StopTimeout, l.Reason().Kind)
}

func TestHeartbeatLost(t *testing.T) {
	now := time.Unix(1000, 0)
	st := ic.HeartbeatStatus{Beats: 3, LastBeat: now.Add(-10 * time.Second)}
	lost, detail := heartbeatLost(st, now, 5*time.Second)
	require.True(t, lost)
	require.Contains(t, detail, "no heartbeat for 10s (after 3 beats")
	lost, _ = heartbeatLost(st, now, 0)
	require.False(t, lost, "no timeout set")
	lost, _ = heartbeatLost(st, now, 15*time.Second)
	require.False(t, lost, "within the timeout")
	lost, _ = heartbeatLost(ic.HeartbeatStatus{}, now, 5*time.Second)
	require.False(t, lost, "a guest that never beat has not stopped beating")
	require.Equal(t, ExitHeartbeat, StopReason{Kind: StopHeartbeatLost}.ExitCode())
	require.Equal(t, "heartbeat-lost", StopHeartbeatLost.String())
}

func TestValidateVMBusOptions(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		err string
	}{
		{Config{VMBus: true, HeartbeatTimeout: 10 * time.Second, KVP: []ic.KV{{Key: "a", Value: "b"}}}, ""},
		{Config{ShutdownTimeout: -time.Second}, "--shutdown-timeout"},
		{Config{HeartbeatTimeout: 10 * time.Second}, "--heartbeat-timeout needs --vmbus"},
		{Config{VMBus: true, HeartbeatTimeout: time.Second}, "less than 3s"},
		{Config{KVP: []ic.KV{{Key: "a"}}}, "--kvp needs --vmbus"},
		{Config{VMBus: true, KVP: []ic.KV{{Key: ""}}}, "empty key"},
		{Config{VMBus: true, KVP: make([]ic.KV, maxKVPKeys+1)}, "at most"},
	} {
		err := c.cfg.validateVMBus()
		if c.err == "" {
			require.NoError(t, err)
			continue
		}
		require.ErrorIs(t, err, ErrInvalidConfig)
		require.ErrorContains(t, err, c.err)
	}
}

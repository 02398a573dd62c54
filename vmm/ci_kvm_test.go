package vmm

import (
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// printThenSpin is a real-mode guest that writes text to COM1 and spins.
func printThenSpin(text string) *Program {
	code := []byte{0xba, 0xf8, 0x03} // mov dx, 0x3f8
	for _, c := range []byte(text) {
		code = append(code, 0xb0, c, 0xee) // mov al, c; out dx, al
	}
	code = append(code, 0xeb, 0xfe) // jmp $
	return realModeProgram(code)
}

func TestKVMExpectStopsTheGuest(t *testing.T) {
	r := runGuest(t, Config{Program: printThenSpin("boot\nall READY now\nnot seen\n"),
		Expect: regexp.MustCompile(`READY`), Fail: regexp.MustCompile(`panic`)})
	require.Equal(t, StopExpectMatched, r.res.Reason.Kind, r.res.Reason.String())
	require.Equal(t, 0, r.res.Reason.ExitCode())
	require.Equal(t, "all READY", r.res.Reason.Detail, "matched as soon as the line holds READY")
	require.NotZero(t, r.res.Match)
	require.Less(t, r.res.Match, 10*time.Second, "stopped at the match, not the 20 s timeout")
	require.Equal(t, "boot\nall READY", string(r.console), "the match reached the console first; nothing after it ran")
}

func TestKVMFailPatternGivesExit6(t *testing.T) {
	r := runGuest(t, Config{Program: printThenSpin("ok\nsomething FAILED\nREADY\n"),
		Expect: regexp.MustCompile(`READY`), Fail: regexp.MustCompile(`FAILED`)})
	require.Equal(t, StopFailMatched, r.res.Reason.Kind, r.res.Reason.String())
	require.Equal(t, ExitFailMatched, r.res.Reason.ExitCode())
	rep := r.res.Report("READY", "FAILED")
	require.Equal(t, "fail", rep.Match.Kind)
	require.Equal(t, "something FAILED", rep.Match.Line)
	require.EqualValues(t, len("ok\nsomething FAILED"), rep.Devices.UART.TxBytes, "stopped at the failing line")
}

func TestKVMHaltWithInterruptsOffIsDetected(t *testing.T) {
	for _, cpus := range []int{1, 2} {
		r := runGuest(t, Config{Program: realModeProgram([]byte{0xfa, 0xf4, 0xeb, 0xfd}), // cli; hlt; jmp hlt
			CPUs: cpus, Timeout: 15 * time.Second})
		require.Equal(t, StopHalted, r.res.Reason.Kind, "cpus=%d: %s", cpus, r.res.Reason)
		require.Equal(t, ExitPanic, r.res.Reason.ExitCode())
		require.Less(t, r.res.Wall, 5*time.Second, "detected, not timed out")
	}
}

func TestKVMHaltWithInterruptsOnWaitsForTimeout(t *testing.T) {
	// sti; hlt: an interrupt could still wake it, so only the timeout ends it.
	r := runGuest(t, Config{Program: realModeProgram([]byte{0xfb, 0xf4, 0xeb, 0xfd}), Timeout: 1500 * time.Millisecond})
	require.Equal(t, StopTimeout, r.res.Reason.Kind, r.res.Reason.String())
}

package vmm

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestExitCodes(t *testing.T) {
	cases := []struct {
		r    StopReason
		want int
	}{
		{StopReason{Kind: StopPowerOff}, 0},
		{StopReason{Kind: StopError}, 1},
		{StopReason{Kind: StopPanic}, 3},
		{StopReason{Kind: StopTimeout}, 4},
		{StopReason{Kind: StopReset}, 5},
		{StopReason{Kind: StopDebugExit, Value: 0}, 1},
		{StopReason{Kind: StopDebugExit, Value: 1}, 3},
		{StopReason{Kind: StopDebugExit, Value: 0x21}, 0x43},
		{StopReason{Kind: StopDebugExit, Value: 0x80}, 1},
		{StopReason{Kind: StopInterrupted}, 130},
		{StopReason{Kind: StopExpectMatched}, 0},
		{StopReason{Kind: StopFailMatched}, 6},
		{StopReason{Kind: StopHalted}, 3},
	}
	for _, c := range cases {
		require.Equal(t, c.want, c.r.ExitCode(), c.r.String())
	}
}

func TestStopLatchFirstWins(t *testing.T) {
	l := newStopLatch()
	var wg sync.WaitGroup
	wins := make(chan StopKind, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(k StopKind) {
			defer wg.Done()
			if l.Stop(StopReason{Kind: k}) {
				wins <- k
			}
		}(StopKind(i % 5))
	}
	wg.Wait()
	close(wins)
	var got []StopKind
	for k := range wins {
		got = append(got, k)
	}
	require.Len(t, got, 1)
	require.Equal(t, got[0], l.Reason().Kind)
	select {
	case <-l.Done():
	default:
		t.Fatal("latch not done")
	}
}

package piix

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestResetControl(t *testing.T) {
	resets := 0
	r := NewResetControl(func() { resets++ })
	r.Write(0, []byte{rcrSystemReset})
	require.Zero(t, resets, "bit 1 alone does not reset")
	b := []byte{0}
	r.Read(0, b)
	require.Equal(t, byte(rcrSystemReset), b[0])
	r.Write(0, []byte{0x06}) // OVMF's cold reset
	require.Equal(t, 1, resets)
	r.Write(0, []byte{0x04})
	require.Equal(t, 2, resets)
	r.Write(0, nil)
	require.Equal(t, 2, resets)
}

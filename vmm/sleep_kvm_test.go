package vmm

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmdev/vmm/internal/kvmtest"
)

// s3WakeVector is where the tiny guest asks to resume: CS 0x900, IP 0.
const s3WakeVector = 0x9000

// s3Guest arms the RTC alarm for every second (all three alarm registers
// "don't care") with AIE, stores s3WakeVector as the FACS waking vector,
// enables RTC_EN and enters S3. Falling through the sleep request exits
// with 0xee. At the waking vector it exits with PM1 status.
func s3Guest(facs uint64) (main, wake []byte) {
	cmos := func(reg, v byte) []byte { return []byte{0xb0, reg, 0xe6, 0x70, 0xb0, v, 0xe6, 0x71} }
	var c []byte
	c = append(c, cmos(0x01, 0xc0)...)
	c = append(c, cmos(0x03, 0xc0)...)
	c = append(c, cmos(0x05, 0xc0)...)
	c = append(c, cmos(0x0b, 0x22)...)                // 24-hour, AIE
	c = append(c, 0xb0, 0x0c, 0xe6, 0x70, 0xe4, 0x71) // read status C
	seg, off := uint16(facs>>4), uint16(facs&0xf)+facsWakingVector
	c = append(c, 0xb8, byte(seg), byte(seg>>8), 0x8e, 0xc0) // mov ax, seg; mov es, ax
	c = append(c, 0x66, 0x26, 0xc7, 0x06, byte(off), byte(off>>8))
	c = binary.LittleEndian.AppendUint32(c, s3WakeVector)   // mov dword [es:off], vector
	c = append(c, 0xba, 0x02, 0x06, 0xb8, 0x00, 0x04, 0xef) // PM1 enable = RTC_EN
	c = append(c, 0xba, 0x04, 0x06, 0xb8, 0x01, 0x24, 0xef) // PM1 control = SLP_TYP 1 | SLP_EN | SCI_EN
	c = append(c, 0xb0, 0xee, 0xe6, 0xf4, 0xf4)             // not reached: exit 0xee
	wake = []byte{
		0xba, 0x00, 0x06, // mov dx, 0x600
		0xed,       // in ax, dx (PM1 status)
		0xe7, 0xf4, // out 0xf4, ax
		0xf4,
	}
	return c, wake
}

// TestKVMS3RoundTrip: a guest suspends to RAM, the RTC alarm wakes it, and
// its boot CPU resumes in real mode at the waking vector with WAK_STS and
// RTC_STS set. S3 is offered with one vCPU only (directPM); AP parking is
// unit-tested in sleep_test.go.
func TestKVMS3RoundTrip(t *testing.T) {
	kvmtest.Require(t)
	m, err := New(Config{Program: realModeProgram([]byte{0xf4}), CPUs: 1, Memory: testMemory, Timeout: 20 * time.Second}, nil)
	require.NoError(t, err)
	defer m.Close()
	require.NotZero(t, m.facs, "direct boot's PC ACPI has a FACS")
	main, wake := s3Guest(m.facs)
	_, err = m.Memory().WriteAt(main, 0x7c00)
	require.NoError(t, err)
	_, err = m.Memory().WriteAt(wake, s3WakeVector)
	require.NoError(t, err)
	res := m.Run(context.Background())
	require.Equal(t, StopDebugExit, res.Reason.Kind, res.Reason.String())
	require.Equal(t, uint32(0x8400), res.Reason.Value, "PM1 status at the waking vector: WAK_STS|RTC_STS")
	require.NotNil(t, res.Sleep)
	require.Equal(t, 1, res.Sleep.Suspends)
	require.Equal(t, 1, res.Sleep.Resumes)
	require.Equal(t, "rtc alarm", res.Sleep.LastWake)
	require.Positive(t, res.Sleep.Asleep)
	require.LessOrEqual(t, res.Sleep.Asleep, 2*time.Second, "the every-second alarm woke it")
}

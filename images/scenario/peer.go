package scenario

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/vmmdev/vmm/images/pattern"
)

// PeerReady is the peer's answer to a timed upload request ('T'): it has
// made the bytes it expects, and the agent may start its clock.
const PeerReady = "R"

// MaxTimed bounds a timed upload: the peer holds all of it in memory.
const MaxTimed = 256 << 20

// timedChunk is how much of a timed upload the peer compares at a time.
const timedChunk = 256 << 10

// ReceiveTimed is the peer's side of a timed upload of n bytes of
// UploadSeed, after its request header was read from r: it makes the
// expected bytes before saying PeerReady on w, then compares what arrives
// with them (a memory compare, not the pattern generator), and replies
// PeerOK or PeerBad. The benchmark uses it so that the agent's clock times
// the network, not the pattern generators at its two ends.
func ReceiveTimed(r *bufio.Reader, w io.Writer, n int64) error {
	if n < 0 || n > MaxTimed {
		return fmt.Errorf("timed upload of %d bytes (at most %d)", n, MaxTimed)
	}
	want := make([]byte, n)
	pattern.Fill(want, UploadSeed, 0)
	if _, err := io.WriteString(w, PeerReady); err != nil {
		return fmt.Errorf("timed upload: ready: %w", err)
	}
	buf := make([]byte, timedChunk)
	ok := true
	for off := int64(0); off < n; {
		m, err := r.Read(buf[:min(int64(len(buf)), n-off)])
		if m > 0 {
			ok = ok && bytes.Equal(buf[:m], want[off:off+int64(m)])
			off += int64(m)
		}
		if err != nil {
			return fmt.Errorf("timed upload after %d bytes: %w", off, err)
		}
	}
	reply := PeerOK
	if !ok {
		reply = PeerBad
	}
	_, err := io.WriteString(w, reply)
	return err
}

// SendTimed is the peer's side of a timed download of n bytes of
// DownloadSeed, after its request header was read from r: it makes the
// bytes, says PeerReady on w, and sends them all once the agent's go byte
// arrives on r, so that the agent's clock times the network.
func SendTimed(r *bufio.Reader, w io.Writer, n int64) error {
	if n < 0 || n > MaxTimed {
		return fmt.Errorf("timed download of %d bytes (at most %d)", n, MaxTimed)
	}
	data := make([]byte, n)
	pattern.Fill(data, DownloadSeed, 0)
	if _, err := io.WriteString(w, PeerReady); err != nil {
		return fmt.Errorf("timed download: ready: %w", err)
	}
	if _, err := r.ReadByte(); err != nil {
		return fmt.Errorf("timed download: go: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("timed download: %w", err)
	}
	return nil
}

package net

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/vmmdev/vmm/devices/virtio/queue"
)

// FuzzFill scatters a frame over receive chains whose buffer sizes the
// guest chose: the used lengths must add up to the frame, num_buffers must
// count the chains used, and the buffers must hold the frame in order.
func FuzzFill(f *testing.F) {
	f.Add(uint16(4012), []byte{6, 0, 6, 0, 6, 0})
	f.Add(uint16(13), []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Add(uint16(1500), []byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, n uint16, sizes []byte) {
		frameLen := HeaderSize + int(n)%4096
		frame := make([]byte, frameLen)
		for i := range frame {
			frame[i] = byte(i * 7)
		}
		var chains []queue.Chain
		room := 0
		for i := 0; i+1 < len(sizes) && room < frameLen; i += 2 {
			// Each chain: up to three buffers of the sizes the input gives.
			var c queue.Chain
			for j := 0; j < 1+int(sizes[i]%3); j++ {
				b := make([]byte, 1+int(sizes[i+1])*(j+1)%700)
				c.Writable = append(c.Writable, b)
				room += len(b)
			}
			chains = append(chains, c)
		}
		if room < frameLen {
			return // the receiver only fills chains that hold the frame
		}
		want := append([]byte(nil), frame...)
		used := fill(frame, chains, true)
		var got []byte
		total, count := 0, 0
		for i, c := range chains {
			if used[i] == 0 {
				continue
			}
			count = i + 1
			total += int(used[i])
			left := int(used[i])
			for _, b := range c.Writable {
				k := min(left, len(b))
				got = append(got, b[:k]...)
				left -= k
			}
		}
		if total != frameLen {
			t.Fatalf("used %d bytes for a %d-byte frame", total, frameLen)
		}
		if nb := binary.LittleEndian.Uint16(got[10:]); int(nb) != count {
			t.Fatalf("num_buffers %d, %d chains used", nb, count)
		}
		if !bytes.Equal(got[:10], want[:10]) || !bytes.Equal(got[HeaderSize:], want[HeaderSize:]) {
			t.Fatal("frame not reassembled in order")
		}
	})
}

package net

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/vmmdev/vmm/devices/virtio"
	"github.com/vmmdev/vmm/devices/virtio/queue"
)

// receiver moves frames from the tap into the guest's receive buffers.
type receiver struct {
	q         *queue.Queue
	irq       virtio.Interrupt
	run       *virtio.Run
	tap       *Tap
	log       *slog.Logger
	drops     *dropLog
	mergeable bool
	buf       []byte
	// held are chains taken from the ring for a frame that did not fit yet;
	// they are used for the next frame.
	held []queue.Chain
}

func (r *receiver) loop() {
	for {
		n, err := r.tap.Read(r.buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed) {
				return
			}
			select {
			case <-r.run.Stop():
				return
			default:
			}
			r.log.Warn("virtio-net rx: tap read", "err", err)
			return
		}
		if n <= HeaderSize {
			continue
		}
		if !r.deliver(r.buf[:n]) {
			return
		}
	}
}

// deliver places one frame (with its tap header) into receive chains,
// waiting for the guest to post buffers if it has none. It reports false
// when the device stops.
func (r *receiver) deliver(frame []byte) bool {
	for {
		chains, fits, err := r.collect(len(frame))
		if err != nil {
			r.run.Fail(fmt.Errorf("rx: %w", err))
			return false
		}
		if fits {
			used := fill(frame, chains, r.mergeable)
			for i, c := range chains {
				if err := r.q.Push(c.Head, used[i]); err != nil {
					r.run.Fail(fmt.Errorf("rx: %w", err))
					return false
				}
			}
			r.held = r.held[:0]
			if r.q.NeedInterrupt() {
				r.irq.Queue(rxQueue)
			}
			return true
		}
		if len(r.held) >= int(r.q.Size()) || !r.mergeable && len(r.held) > 0 {
			// Even every buffer the ring can hold is too small: drop the
			// frame and keep the buffers for the next one.
			r.drops.drop("virtio-net rx: frame larger than the guest's buffers; dropped", "len", len(frame))
			if !r.mergeable {
				// Without mergeable buffers one chain must hold a frame;
				// return the too-small chain unused rather than hoard it.
				if err := r.q.Push(r.held[0].Head, 0); err != nil {
					r.run.Fail(fmt.Errorf("rx: %w", err))
					return false
				}
				r.held = r.held[:0]
				if r.q.NeedInterrupt() {
					r.irq.Queue(rxQueue)
				}
			}
			return true
		}
		// Out of buffers: ask for a notification and park until it comes.
		if r.q.EnableNotify() {
			continue
		}
		if !r.run.Wait(rxQueue) {
			return false
		}
	}
}

// collect takes chains from the ring into held until their writable space
// holds n bytes (one chain without mergeable buffers); it reports whether
// they do.
func (r *receiver) collect(n int) ([]queue.Chain, bool, error) {
	room := 0
	for _, c := range r.held {
		room += c.WritableLen()
	}
	for room < n {
		if !r.mergeable && len(r.held) > 0 {
			return r.held, false, nil
		}
		c, ok, err := r.q.Next()
		if err != nil {
			return nil, false, err
		}
		if !ok {
			return r.held, false, nil
		}
		r.held = append(r.held, c)
		room += c.WritableLen()
	}
	return r.held, true, nil
}

// fill scatters frame over chains, whose writable space is known to hold
// it, sets num_buffers in the header, and returns each chain's used length.
// Chains after the last one needed get length 0; only a hostile driver
// posts receive chains with no writable space, so that cannot happen with
// a guest that behaves.
func fill(frame []byte, chains []queue.Chain, mergeable bool) []uint32 {
	used := make([]uint32, len(chains))
	count, left := 0, len(frame)
	for i, c := range chains {
		if left == 0 {
			break
		}
		w := min(c.WritableLen(), left)
		used[i] = uint32(w)
		left -= w
		count = i + 1
	}
	if mergeable {
		binary.LittleEndian.PutUint16(frame[10:], uint16(count))
	} else {
		binary.LittleEndian.PutUint16(frame[10:], 0)
	}
	rest := frame
	for i := range count {
		w := int(used[i])
		queue.Scatter(chains[i].Writable, rest[:w])
		rest = rest[w:]
	}
	return used
}

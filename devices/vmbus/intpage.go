package vmbus

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// The interrupt page: before 5.0 INITIATE_CONTACT names a guest page
// (+16) whose first half holds host->guest channel bits and whose second
// half guest->host ones, one bit per relid (Linux connection.c
// vmbus_connection.recv_int_page / send_int_page; iPXE struct
// vmbus_interrupt). Before 2.4 the host signals channels only there (bit
// relid in the first half, then event flag 0 of the message SINT, which
// Linux's vmbus_isr tests for WS2008 and Win7); a guest that uses the
// page for signals sets bit relid in the second half and signals
// ConnEvent, and the host takes every bit set there.
const (
	pageSize     = 4096
	intHalf      = pageSize / 2
	intPageWords = (MaxRelid + 1) / 32
)

// legacySignals reports whether version signals channels through the
// interrupt page instead of per-channel event flags.
func legacySignals(version uint32) bool { return version < Version2_4 }

// interruptPage returns the interrupt page INITIATE_CONTACT m names (nil,
// nil: none, as 5.x sends). A named page must be page-aligned guest RAM.
func (b *Bus) interruptPage(version uint32, m []byte) ([]byte, error) {
	if version >= Version5_0 {
		return nil, nil
	}
	gpa := binary.LittleEndian.Uint64(m[16:])
	if gpa == 0 {
		return nil, nil
	}
	if gpa%pageSize != 0 {
		return nil, fmt.Errorf("interrupt page %#x not page-aligned", gpa)
	}
	p, err := b.cfg.Mem.Slice(gpa, pageSize)
	if err != nil {
		return nil, fmt.Errorf("interrupt page: %w", err)
	}
	return p, nil
}

// takeSignals clears the guest->host half's bits for relids 0..MaxRelid
// and returns the relids that were set.
func takeSignals(page []byte) []uint32 {
	var relids []uint32
	for w := range intPageWords {
		word := (*uint32)(unsafe.Pointer(&page[intHalf+4*w]))
		if atomic.LoadUint32(word) == 0 {
			continue
		}
		v := atomic.SwapUint32(word, 0)
		for bit := uint32(0); v != 0; bit, v = bit+1, v>>1 {
			if v&1 != 0 {
				relids = append(relids, uint32(w)*32+bit)
			}
		}
	}
	return relids
}

// setSignal sets relid's bit in the host->guest half.
func setSignal(page []byte, relid uint32) {
	word := (*uint32)(unsafe.Pointer(&page[4*(relid/32)]))
	atomic.OrUint32(word, 1<<(relid%32))
}

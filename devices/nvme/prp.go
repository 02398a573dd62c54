package nvme

import "encoding/binary"

// Status codes (NVMe 1.4 §4.6.1): SCT in bits 10:8, SC in 7:0, DNR bit 14,
// as they land in bits 31:17 of a completion's DW3.
const (
	scSuccess          = 0x00
	scInvalidOpcode    = 0x01
	scInvalidField     = 0x02
	scDataTransfer     = 0x04
	scInternal         = 0x06
	scInvalidNamespace = 0x0b
	scPRPOffset        = 0x13
	scWriteProtected   = 0x20
	scLBARange         = 0x80

	scInvalidCQ        = 0x100
	scInvalidQID       = 0x101
	scInvalidQSize     = 0x102
	scAERLimit         = 0x105
	scInvalidVector    = 0x108
	scInvalidLogPage   = 0x109
	scInvalidQDeletion = 0x10c
	scNotSaveable      = 0x10d

	scWriteFault      = 0x280
	scUnrecoveredRead = 0x281

	statusDNR = 0x4000
)

// fail is a completion with an error status that a retry cannot fix.
func fail(sc uint16) completion { return completion{status: sc | statusDNR} }

// prpBuffers resolves the data pointer of a transfer of n bytes (NVMe 1.4
// §4.3): PRP1 with a dword-aligned offset, then PRP2 as the second page or
// as a PRP list whose last entry chains to the next list page. Every page is
// checked against guest RAM; the walk reads at most one entry per data page
// plus one per list page, so a list that loops back on itself ends when the
// transfer is covered. n must be at most maxTransfer.
func prpBuffers(mem Memory, prp1, prp2, n uint64) ([][]byte, uint16) {
	if n == 0 {
		return nil, scSuccess
	}
	if n > maxTransfer {
		return nil, scInvalidField
	}
	if prp1&3 != 0 {
		return nil, scPRPOffset
	}
	first := min(n, pageSize-prp1%pageSize)
	b, err := mem.Slice(prp1, first)
	if err != nil {
		return nil, scDataTransfer
	}
	bufs := [][]byte{b}
	left := n - first
	if left == 0 {
		return bufs, scSuccess
	}
	if left <= pageSize {
		if prp2%pageSize != 0 {
			return nil, scPRPOffset
		}
		b, err := mem.Slice(prp2, left)
		if err != nil {
			return nil, scDataTransfer
		}
		return append(bufs, b), scSuccess
	}
	// PRP2 points at a list; it may start inside its page.
	if prp2&7 != 0 {
		return nil, scPRPOffset
	}
	list := prp2
	for lists := 0; left > 0; lists++ {
		if lists > maxTransfer/pageSize {
			return nil, scDataTransfer
		}
		// Entries left in this list page.
		slots := (pageSize - list%pageSize) / 8
		page, err := mem.Slice(list, slots*8)
		if err != nil {
			return nil, scDataTransfer
		}
		for i := uint64(0); i < slots && left > 0; i++ {
			e := binary.LittleEndian.Uint64(page[8*i:])
			if i == slots-1 && left > pageSize {
				// The last entry of a full list page chains to the next page.
				if e%pageSize != 0 {
					return nil, scPRPOffset
				}
				list = e
				break
			}
			if e%pageSize != 0 {
				return nil, scPRPOffset
			}
			c := min(left, pageSize)
			b, err := mem.Slice(e, c)
			if err != nil {
				return nil, scDataTransfer
			}
			bufs = append(bufs, b)
			left -= c
		}
	}
	return bufs, scSuccess
}

// copyTo writes data to the transfer's buffers (the rest of them zeroed).
func copyTo(bufs [][]byte, data []byte) {
	for _, b := range bufs {
		n := copy(b, data)
		clear(b[n:])
		data = data[n:]
	}
}

// gather concatenates the transfer's buffers.
func gather(bufs [][]byte) []byte {
	var out []byte
	for _, b := range bufs {
		out = append(out, b...)
	}
	return out
}

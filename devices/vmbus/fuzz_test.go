package vmbus

import (
	"encoding/binary"
	"testing"

	"github.com/vmmdev/vmm/devices/vmbus/gpadl"
	"github.com/vmmdev/vmm/devices/vmbus/internal/guestdrv"
	"github.com/vmmdev/vmm/devices/vmbus/ring"
)

// FuzzControl posts a stream of control messages cut from the fuzzer's
// bytes to a bus with two echo devices, with guest activity in between.
// Records: {u8 act, u8 n, n bytes}. act bit 7: guest activity (take a
// message, EOM, signal a channel, or with bit 3 write the bytes into the
// second half of the interrupt page at PFN 0x1f0 and signal connection 2,
// write a packet into the ring at PFN 0x100, move its write index); else a
// post of the n bytes on connection 1 or 4 (bit 0). Nothing may panic, and the queues and GPADLs stay
// within their bounds.
func FuzzControl(f *testing.F) {
	rec := func(act byte, m []byte) []byte { return append([]byte{act, byte(len(m))}, m...) }
	contact := guestdrv.Msg(msgInitiateContact, 40, Version5_3)
	contact[16] = 2
	f.Add(append(rec(1, contact), rec(0, guestdrv.Msg(msgRequestOffers, 8))...))
	seed := rec(1, contact)
	for _, m := range guestdrv.GPADLMessages(1, 5, []uint64{0x100, 0x101, 0x102, 0x103}) {
		seed = append(seed, rec(0, m)...)
	}
	seed = append(seed, rec(0, guestdrv.Msg(msgOpenChannel, 148, 1, 7, 5, 0, 2))...)
	seed = append(seed, rec(0x80, []byte{1, 2, 3})...)
	seed = append(seed, rec(0x83, nil)...)
	seed = append(seed, rec(0, guestdrv.Msg(msgGPADLTeardown, 16, 1, 5))...)
	seed = append(seed, rec(0, guestdrv.Msg(msgUnload, 8))...)
	f.Add(seed)
	// iPXE's: 3.0, UNLOAD, 0.13 with the interrupt page, a channel
	// signalled through it.
	legacy := guestdrv.Msg(msgInitiateContact, 40, Version3_0)
	binary.LittleEndian.PutUint64(legacy[16:], 0x1f0*4096)
	seed = rec(0, legacy)
	seed = append(seed, rec(0, guestdrv.Msg(msgUnload, 8))...)
	binary.LittleEndian.PutUint32(legacy[8:], Version0_13)
	seed = append(seed, rec(0, legacy)...)
	for _, m := range guestdrv.GPADLMessages(2, 5, []uint64{0x100, 0x101, 0x102, 0x103}) {
		seed = append(seed, rec(0, m)...)
	}
	seed = append(seed, rec(0, guestdrv.Msg(msgOpenChannel, 148, 2, 7, 5, 0, 2))...)
	seed = append(seed, rec(0x88, []byte{4})...)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		synic := guestdrv.NewSynIC()
		mem := make(guestdrv.Mem, 2<<20)
		b := New(Config{Mem: mem, Host: synic, VPs: 2, InQueue: 8, GPADL: gpadl.Limits{Count: 8, TotalPages: 64}})
		for i := range 2 {
			if _, err := b.Add(&echo{offer: Offer{Instance: GUID{byte(i)}}}); err != nil {
				t.Fatal(err)
			}
		}
		for len(data) >= 2 {
			act, n := data[0], int(data[1])
			data = data[2:]
			if n > len(data) {
				n = len(data)
			}
			m := data[:n]
			data = data[n:]
			if act&0x80 != 0 {
				synic.Take(int(act&1), 2)
				b.EOM()
				if act&8 != 0 {
					copy(mem[0x1f0*4096+2048:0x1f1*4096], m)
					b.Signal(ConnEvent)
				} else {
					b.Signal(eventConnBase + uint32(act>>1&3))
				}
				w := &guestdrv.Ring{Mem: mem, Hdr: 0x100 * 4096, Size: 4096}
				w.Write(ring.TypeDataInband, 1, 1, m)
				if len(m) >= 4 {
					binary.LittleEndian.PutUint32(mem[0x100*4096:], binary.LittleEndian.Uint32(m))
				}
				continue
			}
			conn := uint32(1)
			if act&1 != 0 {
				conn = 4
			}
			b.Post(conn, m)
			s := b.Stats()
			if s.Pending > 8 || s.Queued > outSoftLimit+3 || s.GPADLs > 8 || s.GPADLPages > 64 {
				t.Fatalf("bounds: %+v", s)
			}
		}
	})
}

package serial

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
)

// fakeLine records every level the UART drives.
type fakeLine struct {
	mu     sync.Mutex
	levels []bool
}

func (l *fakeLine) SetLevel(high bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.levels = append(l.levels, high)
}

func (l *fakeLine) high() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.levels) > 0 && l.levels[len(l.levels)-1]
}

func rd(u *UART, off uint64) byte {
	b := []byte{0}
	u.Read(off, b)
	return b[0]
}

func wr(u *UART, off uint64, v byte) { u.Write(off, []byte{v}) }

// step is one register access in a table-driven scenario: a write of val, or
// a read expecting want (under mask, 0 meaning all bits).
type step struct {
	write     bool
	off       uint64
	val, want byte
	mask      byte
	irq       level // line level expected after the step
}

// level is an expected interrupt line level; the zero value checks nothing.
type level int8

const (
	hi level = 1
	lo level = -1
)

func w(off uint64, v byte) step        { return step{write: true, off: off, val: v} }
func r(off uint64, want byte) step     { return step{off: off, want: want} }
func rm(off uint64, want, m byte) step { return step{off: off, want: want, mask: m} }
func (s step) line(l level) step       { s.irq = l; return s }

func TestRegisters(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		steps []step
	}{
		{"reset values", nil, []step{
			r(regIER, 0), r(regIIR, iirNone), r(regLCR, 0), r(regMCR, 0),
			r(regLSR, lsrTHRE|lsrTEMT), r(regMSR, msrDCD|msrDSR|msrCTS), r(regSCR, 0),
		}},
		{"scratch", nil, []step{w(regSCR, 0xa5), r(regSCR, 0xa5), w(regSCR, 0x5a), r(regSCR, 0x5a)}},
		{"divisor latch", nil, []step{
			w(regIER, 0x05), w(regLCR, lcrDLAB|0x03), r(regData, 0x0c), w(regData, 0x01), w(regIER, 0x00),
			r(regData, 0x01), r(regIER, 0x00), w(regLCR, 0x03), r(regIER, 0x05), r(regLCR, 0x03),
		}},
		{"linux IER probe", nil, []step{
			w(regIER, 0), rm(regIER, 0, 0x0f), w(regIER, 0x0f), rm(regIER, 0x0f, 0x0f), w(regIER, 0xff), r(regIER, 0x0f),
		}},
		{"linux loopback probe", nil, []step{
			w(regMCR, mcrLoop|mcrRTS|mcrOUT2), rm(regMSR, msrDCD|msrCTS, 0xf0),
			w(regMCR, mcrLoop|mcrDTR|mcrOUT1), rm(regMSR, msrDSR|msrRI, 0xf0),
			w(regMCR, 0), rm(regMSR, msrDCD|msrDSR|msrCTS, 0xf0),
		}},
		{"FIFO identifies as 16550A", nil, []step{
			w(regIIR, fcrEnable), rm(regIIR, iirFIFO, 0xc0), w(regIIR, 0), rm(regIIR, 0, 0xc0),
			// Bits other than enable are not programmed while it is clear.
			w(regIIR, 0xc0), rm(regIIR, 0, 0xc0),
		}},
		{"receive", []byte("hi"), []step{
			r(regLSR, lsrDR|lsrTHRE|lsrTEMT), r(regData, 'h'), r(regData, 'i'), r(regLSR, lsrTHRE|lsrTEMT), r(regData, 0),
		}},
		{"FCR clears receive FIFO", []byte("abc"), []step{
			w(regIIR, fcrEnable), // entering FIFO mode clears it
			r(regLSR, lsrTHRE|lsrTEMT),
		}},
		{"FCR clear bit", nil, []step{
			w(regIIR, fcrEnable), w(regMCR, mcrLoop), w(regData, 'x'), r(regLSR, lsrDR|lsrTHRE|lsrTEMT),
			w(regIIR, fcrEnable|fcrClearRx), r(regLSR, lsrTHRE|lsrTEMT), rm(regIIR, iirFIFO, 0xc0),
		}},
		{"loopback receives transmitted byte", nil, []step{
			w(regMCR, mcrLoop), w(regData, 'L'), r(regLSR, lsrDR|lsrTHRE|lsrTEMT), r(regData, 'L'),
		}},
		{"THRE interrupt and re-assertion", nil, []step{
			w(regMCR, mcrOUT2).line(lo), w(regIER, ierTHRE).line(hi), r(regIIR, iirTHRE).line(lo),
			r(regIIR, iirNone), w(regIER, ierTHRE).line(lo), // no rising edge: stays acknowledged
			w(regIER, 0), w(regIER, ierTHRE).line(hi), r(regIIR, iirTHRE).line(lo),
			w(regData, 'a').line(hi), rm(regIIR, iirTHRE, 0x0f).line(lo),
		}},
		{"THRE with FIFO bits", nil, []step{
			w(regIIR, fcrEnable|0xc0), w(regIER, ierTHRE), r(regIIR, iirFIFO|iirTHRE), r(regIIR, iirFIFO|iirNone),
		}},
		{"RDA outranks THRE", []byte("ab"), []step{
			w(regMCR, mcrOUT2|mcrDTR|mcrRTS), w(regIER, ierRDA|ierTHRE).line(hi),
			r(regIIR, iirRDA).line(hi), r(regIIR, iirRDA), // reading IIR does not clear RDA
			r(regData, 'a'), r(regIIR, iirRDA), r(regData, 'b').line(hi),
			r(regIIR, iirTHRE).line(lo), r(regIIR, iirNone),
		}},
		{"overrun raises line status first", nil, []step{
			w(regMCR, mcrLoop), w(regIER, ierRLS|ierRDA|ierTHRE),
			// 65 bytes into a 64-byte FIFO.
			w(regData, 1), w(regData, 2), w(regData, 3), w(regData, 4), w(regData, 5), w(regData, 6), w(regData, 7), w(regData, 8),
			w(regData, 1), w(regData, 2), w(regData, 3), w(regData, 4), w(regData, 5), w(regData, 6), w(regData, 7), w(regData, 8),
			w(regData, 1), w(regData, 2), w(regData, 3), w(regData, 4), w(regData, 5), w(regData, 6), w(regData, 7), w(regData, 8),
			w(regData, 1), w(regData, 2), w(regData, 3), w(regData, 4), w(regData, 5), w(regData, 6), w(regData, 7), w(regData, 8),
			w(regData, 1), w(regData, 2), w(regData, 3), w(regData, 4), w(regData, 5), w(regData, 6), w(regData, 7), w(regData, 8),
			w(regData, 1), w(regData, 2), w(regData, 3), w(regData, 4), w(regData, 5), w(regData, 6), w(regData, 7), w(regData, 8),
			w(regData, 1), w(regData, 2), w(regData, 3), w(regData, 4), w(regData, 5), w(regData, 6), w(regData, 7), w(regData, 8),
			w(regData, 1), w(regData, 2), w(regData, 3), w(regData, 4), w(regData, 5), w(regData, 6), w(regData, 7), w(regData, 8),
			r(regIIR, iirRDA), w(regData, 9), r(regIIR, iirRLS),
			r(regLSR, lsrDR|lsrOE|lsrTHRE|lsrTEMT), r(regLSR, lsrDR|lsrTHRE|lsrTEMT), r(regIIR, iirRDA),
			// Loopback gates the interrupt output even with OUT2.
			w(regMCR, mcrLoop|mcrOUT2).line(lo), r(regData, 1),
		}},
		{"modem status interrupt", nil, []step{
			w(regMCR, mcrLoop), r(regMSR, msrDCTS|msrDDSR|msrDDCD), w(regIER, ierMS),
			w(regMCR, mcrLoop|mcrDTR|mcrOUT1), r(regIIR, iirMS), r(regMSR, msrDSR|msrRI|msrDDSR),
			r(regIIR, iirNone), w(regMCR, mcrLoop|mcrDTR), r(regMSR, msrDSR|msrTERI),
			w(regMCR, mcrLoop|mcrRTS|mcrOUT2), r(regMSR, msrCTS|msrDCD|msrDDSR|msrDCTS|msrDDCD),
		}},
		{"interrupt needs OUT2", []byte("z"), []step{
			w(regIER, ierRDA).line(lo), r(regIIR, iirRDA).line(lo), w(regMCR, mcrOUT2).line(hi),
			w(regMCR, 0).line(lo), w(regMCR, mcrOUT2).line(hi), r(regData, 'z').line(lo),
		}},
		{"LSR and MSR writes ignored", nil, []step{
			w(regLSR, 0), r(regLSR, lsrTHRE|lsrTEMT), w(regMSR, 0), r(regMSR, msrDCD|msrDSR|msrCTS),
		}},
		{"MCR keeps five bits", nil, []step{w(regMCR, 0xff), r(regMCR, mcrMask)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := &fakeLine{}
			var out bytes.Buffer
			u := New(line, &out)
			if n := u.Input(tt.input); n != len(tt.input) {
				t.Fatalf("Input took %d of %d", n, len(tt.input))
			}
			for i, s := range tt.steps {
				if s.write {
					wr(u, s.off, s.val)
				} else {
					m := s.mask
					if m == 0 {
						m = 0xff
					}
					if got := rd(u, s.off); got&m != s.want {
						t.Fatalf("step %d: read reg %d = %#02x (mask %#02x), want %#02x", i, s.off, got, m, s.want)
					}
				}
				if s.irq != 0 && line.high() != (s.irq == hi) {
					t.Fatalf("step %d: irq line %v, want %v", i, line.high(), s.irq == hi)
				}
			}
			// Only loopback and divisor writes may be swallowed; none of these
			// scenarios transmit to the host except "THRE interrupt".
			if tt.name != "THRE interrupt and re-assertion" && out.Len() != 0 {
				t.Fatalf("unexpected output %q", out.Bytes())
			}
		})
	}
}

func TestLineOnlyTouchedOnChange(t *testing.T) {
	line := &fakeLine{}
	u := New(line, nil)
	wr(u, regMCR, mcrOUT2)
	wr(u, regIER, ierTHRE)
	for range 3 {
		wr(u, regSCR, 1) // unrelated writes must not re-drive the line
	}
	rd(u, regIIR)
	if len(line.levels) != 2 || !line.levels[0] || line.levels[1] {
		t.Fatalf("levels %v, want [true false]", line.levels)
	}
}

func TestTransmit(t *testing.T) {
	var out bytes.Buffer
	u := New(nil, &out)
	for _, c := range []byte("hello\n") {
		wr(u, regData, c)
	}
	wr(u, regLCR, lcrDLAB)
	wr(u, regData, 'X') // divisor, not data
	if out.String() != "hello\n" {
		t.Fatalf("out %q", out.String())
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestWriteErrorsCounted(t *testing.T) {
	u := New(nil, failingWriter{})
	wr(u, regData, 'a')
	wr(u, regData, 'b')
	if n := u.WriteErrors(); n != 2 {
		t.Fatalf("WriteErrors = %d, want 2", n)
	}
	if got := rd(u, regLSR); got != lsrTHRE|lsrTEMT {
		t.Fatalf("LSR after failed writes %#x", got)
	}
}

func TestWideAccess(t *testing.T) {
	u := New(nil, nil)
	u.Write(regMCR, []byte{mcrDTR, 0x00, 0x00, 0x42}) // MCR, LSR (ignored), MSR (ignored), SCR
	got := make([]byte, 4)
	u.Read(regMCR, got)
	want := []byte{mcrDTR, lsrTHRE | lsrTEMT, msrDCD | msrDSR | msrCTS, 0x42}
	if !bytes.Equal(got, want) {
		t.Fatalf("wide read %x, want %x", got, want)
	}
	u.Read(regSCR, got[:2])
	if got[0] != 0x42 || got[1] != 0xff {
		t.Fatalf("read past the end %x", got[:2])
	}
	u.Read(^uint64(0), got[:2])
	if got[0] != 0xff || got[1] != 0xff {
		t.Fatalf("read at wrapping offset %x", got[:2])
	}
	u.Write(^uint64(0), []byte{1, 2}) // must not panic or touch registers
	if rd(u, 0) != 0 {
		t.Fatal("wrapping write reached RBR")
	}
}

func TestInputBounded(t *testing.T) {
	u := New(nil, nil)
	big := bytes.Repeat([]byte{'x'}, FIFOSize+10)
	if n := u.Input(big); n != FIFOSize {
		t.Fatalf("Input = %d, want %d", n, FIFOSize)
	}
	if n := u.Input([]byte{'y'}); n != 0 {
		t.Fatalf("Input into full FIFO = %d", n)
	}
	// Drain any stale wake-up, then check a guest read signals room.
	select {
	case <-u.InputSpace():
	default:
	}
	rd(u, regData)
	select {
	case <-u.InputSpace():
	default:
		t.Fatal("no wake-up after the guest read a byte")
	}
	if n := u.Input([]byte{'y', 'z'}); n != 1 {
		t.Fatalf("Input after one read = %d, want 1", n)
	}
}

func TestInputRefusedInLoopback(t *testing.T) {
	u := New(nil, nil)
	wr(u, regMCR, mcrLoop)
	if n := u.Input([]byte("a")); n != 0 {
		t.Fatalf("Input in loopback = %d", n)
	}
	select {
	case <-u.InputSpace():
	default:
	}
	wr(u, regMCR, 0)
	select {
	case <-u.InputSpace():
	default:
		t.Fatal("leaving loopback did not wake the input side")
	}
	if n := u.Input([]byte("a")); n != 1 {
		t.Fatalf("Input after loopback = %d", n)
	}
}

func TestInputWaitFollowsGuestReads(t *testing.T) {
	u := New(nil, nil)
	msg := bytes.Repeat([]byte("0123456789"), 30) // several FIFOs' worth
	errc := make(chan error, 1)
	go func() {
		_, err := u.InputWait(context.Background(), msg)
		errc <- err
	}()
	var got []byte
	for len(got) < len(msg) {
		// The "guest" polls LSR.DR; it waits on nothing but the device state.
		if rd(u, regLSR)&lsrDR != 0 {
			got = append(got, rd(u, regData))
			continue
		}
		select {
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
			errc = nil
		default:
		}
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("guest received %q", got)
	}
	if errc != nil {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

func TestInputWaitCancelled(t *testing.T) {
	u := New(nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n, err := u.InputWait(ctx, bytes.Repeat([]byte{'q'}, FIFOSize+1))
	if n != FIFOSize || !errors.Is(err, context.Canceled) {
		t.Fatalf("InputWait = %d, %v", n, err)
	}
}

// TestConcurrentAccess drives the UART from several goroutines; run with -race.
func TestConcurrentAccess(t *testing.T) {
	var mu sync.Mutex
	var out bytes.Buffer
	u := New(&fakeLine{}, writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	}))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				wr(u, regData, byte('a'+g))
				rd(u, uint64(i%Size))
				u.Input([]byte{byte(i)})
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if out.Len() != 4*500 {
		t.Fatalf("transmitted %d bytes, want %d", out.Len(), 4*500)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestInputBlocking(t *testing.T) {
	u := New(nil, nil)
	done := make(chan struct{})
	msg := bytes.Repeat([]byte{'b'}, FIFOSize+5)
	res := make(chan bool, 1)
	go func() { res <- u.InputBlocking(msg, done) }()
	for range 5 { // make room for the rest, one byte at a time as the guest would
		for rd(u, regLSR)&lsrDR == 0 {
		}
		rd(u, regData)
	}
	if ok := <-res; !ok {
		t.Fatal("InputBlocking gave up with done open")
	}
	close(done)
	if u.InputBlocking([]byte{'c'}, done) {
		t.Fatal("InputBlocking into a full FIFO succeeded after done closed")
	}
}

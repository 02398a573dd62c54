// Package serial emulates a 16550A UART, the console every x86 OS, firmware
// and boot loader can drive without drivers of its own. It models what Linux's
// 8250 driver probes (scratch register, IER bits, loopback, FIFO identification,
// THRE re-assertion) so the guest sees a genuine 16550A, and transmits at
// once: THR is always empty again by the time the guest looks.
package serial

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/vmmdev/vmm/devices/irq"
)

// Register offsets from the base port (COM1: layout.PortCOM1).
const (
	regData = 0 // RBR on read, THR on write; DLL when LCR.DLAB
	regIER  = 1 // DLM when LCR.DLAB
	regIIR  = 2 // FCR on write
	regLCR  = 3
	regMCR  = 4
	regLSR  = 5
	regMSR  = 6
	regSCR  = 7
	// Size is the number of ports the UART occupies.
	Size = 8
)

const (
	ierRDA  = 0x01 // received data available
	ierTHRE = 0x02 // transmitter holding register empty
	ierRLS  = 0x04 // receiver line status
	ierMS   = 0x08 // modem status
	ierMask = 0x0f // the upper bits do not exist on a 16550A; Linux probes that

	iirNone = 0x01
	iirMS   = 0x00
	iirTHRE = 0x02
	iirRDA  = 0x04
	iirRLS  = 0x06
	iirFIFO = 0xc0 // both FIFO bits: how a 16550A (not a buggy 16550) identifies

	fcrEnable  = 0x01
	fcrClearRx = 0x02
	fcrTrigger = 0xc0

	lcrDLAB = 0x80

	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08 // gates the interrupt output on PC hardware
	mcrLoop = 0x10
	mcrMask = 0x1f

	lsrDR   = 0x01
	lsrOE   = 0x02
	lsrTHRE = 0x20
	lsrTEMT = 0x40

	msrDCTS = 0x01
	msrDDSR = 0x02
	msrTERI = 0x04
	msrDDCD = 0x08
	msrCTS  = 0x10
	msrDSR  = 0x20
	msrRI   = 0x40
	msrDCD  = 0x80
)

// FIFOSize bounds the receive FIFO, and so how much host input the UART holds.
const FIFOSize = 64

// UART is a 16550A. Its methods are safe for concurrent use.
type UART struct {
	irq irq.Line
	out io.Writer
	// space gets a token whenever the guest makes room for input; buffered so
	// a signal sent between a short Input and the wait is not lost.
	space chan struct{}

	mu                 sync.Mutex
	ier, lcr, mcr, scr byte
	dll, dlm, fcr      byte
	lsrErr             byte // overrun, sticky until LSR is read
	msrDelta           byte // modem status change bits, cleared by reading MSR
	thrPending         bool // THRE interrupt raised and not yet acknowledged
	rx                 [FIFOSize]byte
	rxHead, rxLen      int
	irqHigh            bool
	writeErrors        uint64
	txBuf              [1]byte
}

// New returns a UART in its power-on state. Bytes the guest transmits go to
// out (nil discards them), written while the UART's lock is held so output
// keeps its order; a slow out therefore slows the transmitting vCPU, as a
// real line would. line may be nil for a polled-only UART.
func New(line irq.Line, out io.Writer) *UART {
	if out == nil {
		out = io.Discard
	}
	return &UART{
		irq:   line,
		out:   out,
		space: make(chan struct{}, 1),
		dll:   0x0c, // 9600 baud, what firmware usually leaves behind
	}
}

// Read implements bus.Device. Wider accesses read consecutive registers, as
// the ISA bus splits them.
func (u *UART) Read(off uint64, data []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i := range data {
		r := off + uint64(i)
		if r < off || r >= Size {
			data[i] = 0xff
			continue
		}
		data[i] = u.readReg(r)
	}
	u.updateIRQ()
}

// Write implements bus.Device.
func (u *UART) Write(off uint64, data []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, v := range data {
		r := off + uint64(i)
		if r < off || r >= Size {
			continue
		}
		u.writeReg(r, v)
	}
	u.updateIRQ()
}

func (u *UART) readReg(r uint64) byte {
	switch r {
	case regData:
		if u.lcr&lcrDLAB != 0 {
			return u.dll
		}
		return u.pop()
	case regIER:
		if u.lcr&lcrDLAB != 0 {
			return u.dlm
		}
		return u.ier
	case regIIR:
		id := u.pendingID()
		if id == iirTHRE {
			// Reading IIR acknowledges a THRE interrupt (and only that one).
			u.thrPending = false
		}
		if u.fcr&fcrEnable != 0 {
			id |= iirFIFO
		}
		return id
	case regLCR:
		return u.lcr
	case regMCR:
		return u.mcr
	case regLSR:
		v := byte(lsrTHRE|lsrTEMT) | u.lsrErr
		if u.rxLen > 0 {
			v |= lsrDR
		}
		u.lsrErr = 0
		return v
	case regMSR:
		v := u.lines() | u.msrDelta
		u.msrDelta = 0
		return v
	default: // regSCR
		return u.scr
	}
}

func (u *UART) writeReg(r uint64, v byte) {
	switch r {
	case regData:
		if u.lcr&lcrDLAB != 0 {
			u.dll = v
			return
		}
		u.transmit(v)
	case regIER:
		if u.lcr&lcrDLAB != 0 {
			u.dlm = v
			return
		}
		old := u.ier
		u.ier = v & ierMask
		// Enabling THRE while THR is empty raises it again, even after it was
		// acknowledged; Linux's startup test relies on this (QEMU and Bochs
		// resample on the rising edge, and so do we).
		if old&ierTHRE == 0 && u.ier&ierTHRE != 0 {
			u.thrPending = true
		} else if u.ier&ierTHRE == 0 {
			u.thrPending = false
		}
	case regIIR:
		u.writeFCR(v)
	case regLCR:
		u.lcr = v
	case regMCR:
		u.writeMCR(v)
	case regSCR:
		u.scr = v
	}
	// LSR and MSR are read-only; writes are ignored.
}

func (u *UART) transmit(v byte) {
	if u.mcr&mcrLoop != 0 {
		if !u.push(v) {
			u.lsrErr |= lsrOE
		}
	} else {
		u.txBuf[0] = v
		if _, err := u.out.Write(u.txBuf[:]); err != nil {
			u.writeErrors++
		}
	}
	// The byte left at once: THR is empty again.
	u.thrPending = true
}

func (u *UART) writeFCR(v byte) {
	if v&fcrEnable == 0 {
		// Other bits are not programmed unless bit 0 is set; leaving FIFO
		// mode clears the FIFOs.
		if u.fcr&fcrEnable != 0 {
			u.clearRx()
		}
		u.fcr = 0
		return
	}
	if u.fcr&fcrEnable == 0 || v&fcrClearRx != 0 {
		u.clearRx()
	}
	u.fcr = v & (fcrEnable | fcrTrigger)
}

func (u *UART) writeMCR(v byte) {
	oldLines, wasLoop := u.lines(), u.mcr&mcrLoop != 0
	u.mcr = v & mcrMask
	newLines := u.lines()
	changed := oldLines ^ newLines
	if changed&msrCTS != 0 {
		u.msrDelta |= msrDCTS
	}
	if changed&msrDSR != 0 {
		u.msrDelta |= msrDDSR
	}
	if changed&msrDCD != 0 {
		u.msrDelta |= msrDDCD
	}
	if oldLines&msrRI != 0 && newLines&msrRI == 0 {
		u.msrDelta |= msrTERI
	}
	if wasLoop && u.mcr&mcrLoop == 0 {
		u.signalSpace() // host input is accepted again
	}
}

// lines is the modem status inputs: in loopback the MCR outputs wired back,
// otherwise a permanently connected peer (carrier, DSR and CTS up).
func (u *UART) lines() byte {
	if u.mcr&mcrLoop == 0 {
		return msrDCD | msrDSR | msrCTS
	}
	var v byte
	if u.mcr&mcrDTR != 0 {
		v |= msrDSR
	}
	if u.mcr&mcrRTS != 0 {
		v |= msrCTS
	}
	if u.mcr&mcrOUT1 != 0 {
		v |= msrRI
	}
	if u.mcr&mcrOUT2 != 0 {
		v |= msrDCD
	}
	return v
}

// pendingID is the IIR interrupt identification in 16550 priority order.
func (u *UART) pendingID() byte {
	switch {
	case u.ier&ierRLS != 0 && u.lsrErr != 0:
		return iirRLS
	case u.ier&ierRDA != 0 && u.rxLen > 0:
		return iirRDA
	case u.ier&ierTHRE != 0 && u.thrPending:
		return iirTHRE
	case u.ier&ierMS != 0 && u.msrDelta != 0:
		return iirMS
	}
	return iirNone
}

// updateIRQ drives the line to match the state, touching it only on change.
// On a PC the interrupt reaches the PIC only through OUT2, and loopback
// forces the OUT2 pin inactive.
func (u *UART) updateIRQ() {
	level := u.pendingID() != iirNone && u.mcr&(mcrOUT2|mcrLoop) == mcrOUT2
	if level == u.irqHigh {
		return
	}
	u.irqHigh = level
	if u.irq != nil {
		u.irq.SetLevel(level)
	}
}

func (u *UART) push(v byte) bool {
	if u.rxLen == FIFOSize {
		return false
	}
	u.rx[(u.rxHead+u.rxLen)%FIFOSize] = v
	u.rxLen++
	return true
}

func (u *UART) pop() byte {
	if u.rxLen == 0 {
		return 0
	}
	v := u.rx[u.rxHead]
	u.rxHead = (u.rxHead + 1) % FIFOSize
	u.rxLen--
	u.signalSpace()
	return v
}

func (u *UART) clearRx() {
	u.rxHead, u.rxLen = 0, 0
	u.signalSpace()
}

func (u *UART) signalSpace() {
	select {
	case u.space <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Input queues host bytes for the guest to receive and returns how many fit;
// it never blocks. In loopback mode the receiver is disconnected from the
// line and nothing is accepted.
func (u *UART) Input(p []byte) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.mcr&mcrLoop != 0 {
		return 0
	}
	n := 0
	for n < len(p) && u.push(p[n]) {
		n++
	}
	u.updateIRQ()
	return n
}

// InputSpace receives a value after the guest makes room for input (reads a
// byte, clears the FIFO, leaves loopback). A goroutine whose Input came back
// short waits on it and retries: it never spins and never blocks a vCPU. A
// wake-up may be spurious (Input may still return 0); wait again then.
func (u *UART) InputSpace() <-chan struct{} {
	return u.space
}

// InputWait queues all of p, waiting for room as the guest reads, until ctx
// is done. It returns how many bytes were queued.
func (u *UART) InputWait(ctx context.Context, p []byte) (int, error) {
	n, ok := u.inputUntil(p, ctx.Done())
	if !ok {
		return n, fmt.Errorf("serial input: %d of %d bytes queued: %w", n, len(p), ctx.Err())
	}
	return n, nil
}

// InputBlocking is InputWait for callers holding a done channel rather than
// a context: it reports whether all of p was queued before done closed.
func (u *UART) InputBlocking(p []byte, done <-chan struct{}) bool {
	_, ok := u.inputUntil(p, done)
	return ok
}

func (u *UART) inputUntil(p []byte, done <-chan struct{}) (int, bool) {
	n := 0
	for {
		n += u.Input(p[n:])
		if n == len(p) {
			return n, true
		}
		select {
		case <-u.space:
		case <-done:
			return n, false
		}
	}
}

// WriteErrors is how many transmitted bytes out failed to take.
func (u *UART) WriteErrors() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.writeErrors
}

// Package i8042 emulates the minimum of a PS/2 keyboard controller that
// guests expect on a PC: Linux and firmware probe it (self test, command
// byte), and "reboot=k" resets the machine by pulsing its reset line. A
// keyboard with no keys is attached: it answers every byte as a PS/2
// keyboard does (ACK, reset's self-test pass, its ID), because OVMF's PS/2
// driver waits a full second for an ACK after each command it sends,
// whatever the controller reports (polling the PM timer: in the nested test
// host OVMF reached its boot manager after 34 s without the keyboard, 11 s
// with it).
// No mouse is attached: a byte sent to it is answered at once as a
// controller answers for a device that does not respond (0xfe with the
// time-out status bit), so that firmware probing for it moves on. The
// controller raises no interrupts.
package i8042

import "sync"

// Offsets in a registration of [layout.PortI8042, layout.PortI8042+Size):
// 0x60 is the data port, 0x64 status (read) and command (write). 0x61-0x63
// belong to other chips (port 0x61 is KVM's PIT); they read as all ones.
const (
	offData    = 0
	offCommand = 4
	// Size is the length of the registration.
	Size = 5
)

const (
	stOBF      = 0x01 // output buffer full
	stSYS      = 0x04 // system flag: POST passed
	stCMD      = 0x08 // last write went to the command port
	stUnlocked = 0x10 // keyboard not inhibited by the keylock
	stAuxData  = 0x20 // the output buffer holds a byte from the aux (mouse) port
	stTimeout  = 0x40 // the device did not answer the last byte sent to it

	ctrSYS    = 0x04
	ctrKbdDis = 0x10
	ctrAuxDis = 0x20
	// Keyboard interrupt on, POST passed, scancode translation: what a BIOS leaves.
	ctrDefault = 0x01 | ctrSYS | 0x40

	outPortReset = 0x01 // active low: writing 0 here resets the CPU
	outPortA20   = 0x02
)

// Controller commands written to port 0x64.
const (
	cmdReadCTR      = 0x20
	cmdWriteCTR     = 0x60
	cmdDisableAux   = 0xa7
	cmdEnableAux    = 0xa8
	cmdSelfTest     = 0xaa
	cmdTestKbd      = 0xab
	cmdDisableKbd   = 0xad
	cmdEnableKbd    = 0xae
	cmdReadOutPort  = 0xd0
	cmdWriteOutPort = 0xd1
	cmdWriteKbdOut  = 0xd2 // next data byte appears as if the keyboard sent it
	cmdWriteAuxOut  = 0xd3 // next data byte appears as if the mouse sent it
	cmdWriteAux     = 0xd4 // next data byte goes to the mouse
	cmdPulseReset   = 0xfe

	selfTestOK  = 0x55
	portTestOK  = 0x00
	pulseBase   = 0xf0 // 0xf0-0xff pulse output lines whose mask bit is 0
	pulseLineRS = 0x01 // mask bit of the reset line
)

// noDevice is what the controller puts in the output buffer, with
// stTimeout, when the mouse did not answer a byte.
const noDevice = 0xfe

// Controller is the i8042. Its methods are safe for concurrent use.
type Controller struct {
	reset func()

	mu      sync.Mutex
	ctr     byte
	outPort byte
	out     byte // output buffer; reads return it again once drained, as the chip does
	outFull bool
	outAux  bool   // out came from the aux port
	timeout bool   // out is the controller's answer for a device that did not respond
	pending byte   // command waiting for its data byte, or 0
	kbd     []byte // the keyboard's further answer bytes, after out
	kbdArg  byte   // keyboard command waiting for its parameter, or 0
	cmdLast bool
	sys     bool
}

// New returns a controller whose reset line calls reset (outside the
// controller's lock, so reset may do anything). reset may be nil.
func New(reset func()) *Controller {
	return &Controller{reset: reset, ctr: ctrDefault, outPort: outPortReset | outPortA20, sys: true}
}

// Read implements bus.Device; wider accesses read consecutive ports.
func (c *Controller) Read(off uint64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range data {
		p := off + uint64(i)
		switch {
		case p == offData && p >= off:
			c.outFull = false
			data[i] = c.out
			if len(c.kbd) > 0 {
				// The keyboard sends its next byte.
				c.output(c.kbd[0])
				c.kbd = c.kbd[1:]
			}
		case p == offCommand && p >= off:
			data[i] = c.status()
		default:
			data[i] = 0xff
		}
	}
}

// Write implements bus.Device.
func (c *Controller) Write(off uint64, data []byte) {
	reset := false
	c.mu.Lock()
	for i, v := range data {
		p := off + uint64(i)
		if p < off {
			continue
		}
		switch p {
		case offData:
			reset = c.writeData(v) || reset
		case offCommand:
			reset = c.command(v) || reset
		}
	}
	c.mu.Unlock()
	if reset && c.reset != nil {
		c.reset()
	}
}

func (c *Controller) status() byte {
	s := byte(stUnlocked)
	if c.outFull {
		s |= stOBF
	}
	if c.sys {
		s |= stSYS
	}
	if c.cmdLast {
		s |= stCMD
	}
	if c.outAux {
		s |= stAuxData
	}
	if c.timeout {
		s |= stTimeout
	}
	return s
}

func (c *Controller) output(v byte) {
	c.out, c.outFull, c.outAux, c.timeout = v, true, false, false
}

// noMouse is the controller's answer to a byte sent to the absent mouse.
func (c *Controller) noMouse() {
	c.output(noDevice)
	c.outAux, c.timeout = true, true
}

// command runs a controller command and reports whether it resets the machine.
func (c *Controller) command(v byte) bool {
	c.cmdLast = true
	c.pending = 0
	switch v {
	case cmdReadCTR:
		c.output(c.ctr)
	case cmdWriteCTR, cmdWriteOutPort, cmdWriteKbdOut, cmdWriteAuxOut, cmdWriteAux:
		c.pending = v
	case cmdDisableAux:
		c.ctr |= ctrAuxDis
	case cmdEnableAux:
		c.ctr &^= ctrAuxDis
	case cmdSelfTest:
		c.sys = true
		c.output(selfTestOK)
	case cmdTestKbd:
		c.output(portTestOK)
	case cmdDisableKbd:
		c.ctr |= ctrKbdDis
	case cmdEnableKbd:
		c.ctr &^= ctrKbdDis
	case cmdReadOutPort:
		c.output(c.outPort)
	default:
		// 0xfe is the usual form; any pulse command with the reset line's
		// mask bit clear resets too. Unknown commands are ignored.
		return v >= pulseBase && v&pulseLineRS == 0
	}
	return false
}

// writeData handles a data port write and reports whether it resets the machine.
func (c *Controller) writeData(v byte) bool {
	c.cmdLast = false
	cmd := c.pending
	c.pending = 0
	switch cmd {
	case cmdWriteCTR:
		c.ctr = v
		c.sys = v&ctrSYS != 0
	case cmdWriteOutPort:
		c.outPort = v
		return v&outPortReset == 0
	case cmdWriteKbdOut:
		c.output(v)
	case cmdWriteAuxOut:
		c.output(v)
		c.outAux = true
	case cmdWriteAux:
		c.noMouse()
	default:
		c.keyboard(v)
	}
	return false
}

// PS/2 keyboard commands and answers.
const (
	kbdSetLEDs    = 0xed
	kbdEcho       = 0xee
	kbdScanSet    = 0xf0
	kbdGetID      = 0xf2
	kbdTypematic  = 0xf3
	kbdReset      = 0xff
	kbdAck        = 0xfa
	kbdSelfTestOK = 0xaa
	kbdScanSet2   = 0x02
	// An MF2 keyboard's identification, after the ACK to kbdGetID.
	kbdID1, kbdID2 = 0xab, 0x83
)

// keyboard answers byte v sent to the keyboard: its answer replaces what
// the controller held, as a new byte from the device does.
func (c *Controller) keyboard(v byte) {
	answer := []byte{kbdAck}
	switch arg := c.kbdArg; {
	case arg != 0:
		// The parameter of LEDs, scan code set or typematic rate;
		// scan code set 0 asks which set is in use (always 2).
		c.kbdArg = 0
		if arg == kbdScanSet && v == 0 {
			answer = append(answer, kbdScanSet2)
		}
	case v == kbdSetLEDs || v == kbdScanSet || v == kbdTypematic:
		c.kbdArg = v
	case v == kbdEcho:
		answer = []byte{kbdEcho}
	case v == kbdGetID:
		answer = append(answer, kbdID1, kbdID2)
	case v == kbdReset:
		answer = append(answer, kbdSelfTestOK)
	}
	c.output(answer[0])
	c.kbd = append(c.kbd[:0], answer[1:]...)
}

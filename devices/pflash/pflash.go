// Package pflash is a CFI parallel NOR flash chip with the Intel/Sharp
// command set (CFI command set 0x0001, QEMU's pflash_cfi01), one byte wide,
// with uniform 4 KiB erase blocks: what OVMF keeps its code and its UEFI
// variable store in. Every program and erase of a writable chip reaches its
// backing store before the guest's write returns (OVMF never polls the
// status register, so each operation completes synchronously); a read-only
// chip accepts the commands and reports a program or erase error, changing
// nothing.
//
// A chip in read-array mode can be mapped into the guest read-only (KVM
// ROM-device mode): reads then never exit, writes exit to Write as MMIO.
// The mode hook tells the machine when the chip enters or leaves read-array
// mode, so that it maps or unmaps the slot.
package pflash

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"sync"
)

// BlockSize is the erase block: OVMF's flash block size, and QEMU's sector.
const BlockSize = 4096

// Status register bits.
const (
	StatusReady        = 0x80 // write state machine ready
	StatusEraseError   = 0x20 // block erase failed (or a bad command sequence)
	StatusProgramError = 0x10 // program failed (or a bad command sequence)
)

// Commands (the first byte of a write).
const (
	cmdReadArray       = 0xff
	cmdReadArrayAlt    = 0xf0 // AMD-style reset, accepted as read array
	cmdReadArrayZero   = 0x00 // QEMU treats it as read array too
	cmdProgram         = 0x10
	cmdProgramAlt      = 0x40
	cmdBlockErase      = 0x20
	cmdClearStatus     = 0x50
	cmdLockSetup       = 0x60
	cmdReadStatus      = 0x70
	cmdReadID          = 0x90
	cmdCFIQuery        = 0x98
	cmdBufferedWrite   = 0xe8
	cmdConfirm         = 0xd0
	lockBlock          = 0x01
	lockDown           = 0x2f
	maxBufferedWrite   = 64 // bytes; CFI 0x2A says 2^6
	log2MaxBufferWrite = 6
)

// mode is what reads return.
type mode int

const (
	modeArray  mode = iota // the chip's contents
	modeStatus             // the status register
	modeID                 // identifier codes
	modeCFI                // the CFI query table
)

// state is what the next write means.
type state int

const (
	stateCommand       state = iota // a command byte
	stateProgram                    // the data of a program command
	stateErase                      // the confirm of a block erase
	stateLock                       // the second byte of a lock command
	stateBufferCount                // the byte count of a buffered write
	stateBufferData                 // buffered write data
	stateBufferConfirm              // the confirm of a buffered write
)

// Store is where a writable chip's contents persist. WriteAt must be
// durable when it returns (the machine's file store writes and syncs).
type Store interface {
	WriteAt(p []byte, off int64) (int, error)
}

// ErrSize means a chip's size is not a whole number of erase blocks.
var ErrSize = errors.New("flash size is not a positive multiple of 4 KiB")

// Chip is one flash device. Its methods are safe for concurrent use.
type Chip struct {
	name  string
	data  []byte // the contents; a read-only KVM slot may map it
	store Store  // nil: read-only chip (program and erase fail)
	log   *slog.Logger
	// hook is told when the chip enters (true) or leaves (false)
	// read-array mode; it runs under the chip's lock, so the mapping
	// always matches the mode.
	hook func(readArray bool)

	mu       sync.Mutex
	mode     mode
	state    state
	status   byte
	buf      []pending // buffered write data, committed on confirm
	bufLeft  int       // buffered write bytes still to come
	bufBlock int       // the block a buffered write stays in
}

// pending is one write of a buffered write.
type pending struct {
	off  int
	data []byte
}

// New returns a chip over data (its length is the chip's size). store
// receives every program and erase; nil makes the chip read-only. The chip
// starts in read-array mode, status ready.
func New(name string, data []byte, store Store, log *slog.Logger) (*Chip, error) {
	if len(data) == 0 || len(data)%BlockSize != 0 {
		return nil, fmt.Errorf("%s: %d bytes: %w", name, len(data), ErrSize)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Chip{name: name, data: data, store: store, log: log, status: StatusReady}, nil
}

// SetModeHook installs the read-array hook (before the guest runs).
func (c *Chip) SetModeHook(hook func(readArray bool)) { c.hook = hook }

// Size is the chip's size in bytes.
func (c *Chip) Size() int { return len(c.data) }

// Data is the chip's contents: what a read-only slot maps in read-array
// mode. The chip changes it only while not in read-array mode.
func (c *Chip) Data() []byte { return c.data }

// ReadOnly says whether program and erase fail.
func (c *Chip) ReadOnly() bool { return c.store == nil }

// Read implements bus.Device: the contents in read-array mode, else the
// status, ID or CFI byte replicated across the access.
func (c *Chip) Read(off uint64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mode == modeArray {
		for i := range data {
			data[i] = 0xff
			if a := off + uint64(i); a >= off && a < uint64(len(c.data)) {
				data[i] = c.data[a]
			}
		}
		return
	}
	var v byte
	switch c.mode {
	case modeStatus:
		v = c.status
	case modeID:
		v = c.idByte(off)
	case modeCFI:
		v = c.cfiByte(off)
	}
	for i := range data {
		data[i] = v
	}
}

// idByte is read-identifier mode: manufacturer and device codes 0 (as
// QEMU's pc flash), block lock status 0 (unlocked).
func (c *Chip) idByte(uint64) byte { return 0 }

// cfiByte is the CFI query table at offset off (one byte per address: the
// chip is 8 bits wide).
func (c *Chip) cfiByte(off uint64) byte {
	off &= 0xff
	blocks := len(c.data) / BlockSize
	switch off {
	case 0x10, 0x11, 0x12:
		return "QRY"[off-0x10]
	case 0x13:
		return 0x01 // primary command set: Intel/Sharp extended
	case 0x15:
		return 0x31 // primary extended table at 0x31
	case 0x1b:
		return 0x45 // Vcc min 4.5 V
	case 0x1c:
		return 0x55 // Vcc max 5.5 V
	case 0x1f:
		return 0x07 // typical byte program: 2^7 us
	case 0x20:
		return 0x07 // typical buffered write: 2^7 us
	case 0x21:
		return 0x0a // typical block erase: 2^10 ms
	case 0x23, 0x24, 0x25:
		return 0x04 // maximum: 2^4 times typical
	case 0x27:
		return byte(bits.Len(uint(len(c.data))) - 1) // log2 size (rounded down)
	case 0x28:
		return 0x00 // x8 interface
	case 0x2a:
		return log2MaxBufferWrite
	case 0x2c:
		return 0x01 // one erase block region
	case 0x2d:
		return byte(blocks - 1)
	case 0x2e:
		return byte((blocks - 1) >> 8)
	case 0x2f:
		return byte(BlockSize / 256)
	case 0x30:
		return byte(BlockSize / 256 >> 8)
	case 0x31, 0x32, 0x33:
		return "PRI"[off-0x31]
	case 0x34:
		return '1'
	case 0x35:
		return '0'
	}
	return 0
}

// Write implements bus.Device: a command, or the data a command waits for.
// The command byte is the access's first byte, at any address of the chip.
func (c *Chip) Write(off uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v := data[0]
	switch c.state {
	case stateCommand:
		c.command(off, v)
	case stateProgram:
		c.state = stateCommand
		c.program(off, data)
		c.setMode(modeStatus)
	case stateErase:
		c.state = stateCommand
		switch v {
		case cmdConfirm:
			c.erase(off)
			c.setMode(modeStatus)
		case cmdReadArray:
			c.setMode(modeArray)
		default:
			c.sequenceError()
		}
	case stateLock:
		c.state = stateCommand
		switch v {
		case lockBlock, cmdConfirm, lockDown:
			// Locks are accepted and have no effect: the code chip is
			// read-only anyway, and OVMF never locks the store.
			c.status |= StatusReady
			c.setMode(modeStatus)
		case cmdReadArray:
			c.setMode(modeArray)
		default:
			c.sequenceError()
		}
	case stateBufferCount:
		n := int(v) + 1
		if n > maxBufferedWrite || off >= uint64(len(c.data)) {
			c.state = stateCommand
			c.sequenceError()
			return
		}
		c.state, c.bufLeft, c.bufBlock, c.buf = stateBufferData, n, int(off/BlockSize), c.buf[:0]
	case stateBufferData:
		// Every byte stays in the block the count named (the write
		// buffer holds one block's bytes): a wide access that starts in
		// it but runs past its end is a bad sequence too.
		last := off + uint64(len(data)) - 1
		if last >= uint64(len(c.data)) || last < off || int(off/BlockSize) != c.bufBlock ||
			int(last/BlockSize) != c.bufBlock || len(data) > c.bufLeft {
			c.state = stateCommand
			c.sequenceError()
			return
		}
		c.buf = append(c.buf, pending{int(off), append([]byte(nil), data...)})
		if c.bufLeft -= len(data); c.bufLeft == 0 {
			c.state = stateBufferConfirm
		}
	case stateBufferConfirm:
		c.state = stateCommand
		if v != cmdConfirm {
			c.sequenceError()
			return
		}
		for _, p := range c.buf {
			c.program(uint64(p.off), p.data)
		}
		c.buf = c.buf[:0]
		c.setMode(modeStatus)
	}
}

// command starts the command v.
func (c *Chip) command(off uint64, v byte) {
	switch v {
	case cmdReadArray, cmdReadArrayAlt, cmdReadArrayZero:
		c.setMode(modeArray)
	case cmdProgram, cmdProgramAlt:
		c.state = stateProgram
		c.setMode(modeStatus)
	case cmdBlockErase:
		c.state = stateErase
		c.setMode(modeStatus)
	case cmdClearStatus:
		// OVMF's probe: after clear status, read status must give 0.
		c.status = 0
		c.setMode(modeArray)
	case cmdLockSetup:
		c.state = stateLock
		c.setMode(modeStatus)
	case cmdReadStatus:
		c.setMode(modeStatus)
	case cmdReadID:
		c.setMode(modeID)
	case cmdCFIQuery:
		c.setMode(modeCFI)
	case cmdBufferedWrite:
		if off >= uint64(len(c.data)) {
			c.sequenceError()
			return
		}
		// The status register says the write buffer is available.
		c.status |= StatusReady
		c.state = stateBufferCount
		c.setMode(modeStatus)
	default:
		c.log.Debug("pflash: unknown command", "chip", c.name, "cmd", fmt.Sprintf("%#x", v), "off", fmt.Sprintf("%#x", off))
		c.setMode(modeArray)
	}
}

// sequenceError is an invalid command sequence: both error bits, as Intel
// parts report it, and back to read array.
func (c *Chip) sequenceError() {
	c.status |= StatusReady | StatusProgramError | StatusEraseError
	c.setMode(modeArray)
}

// program writes data at off (QEMU's flash overwrites rather than clearing
// bits, and OVMF is written against it), and persists it.
func (c *Chip) program(off uint64, data []byte) {
	c.status |= StatusReady
	end := off + uint64(len(data))
	if c.store == nil || off >= uint64(len(c.data)) || end > uint64(len(c.data)) || end < off {
		c.status |= StatusProgramError
		return
	}
	// The store first: a failed write leaves contents and file alike.
	if _, err := c.store.WriteAt(data, int64(off)); err != nil {
		c.log.Error("pflash: program not persisted", "chip", c.name, "off", off, "err", err)
		c.status |= StatusProgramError
		return
	}
	copy(c.data[off:end], data)
}

// erase fills the block holding off with 0xff and persists it.
func (c *Chip) erase(off uint64) {
	c.status |= StatusReady
	if c.store == nil || off >= uint64(len(c.data)) {
		c.status |= StatusEraseError
		return
	}
	start := off &^ (BlockSize - 1)
	blank := bytes.Repeat([]byte{0xff}, BlockSize)
	if _, err := c.store.WriteAt(blank, int64(start)); err != nil {
		c.log.Error("pflash: erase not persisted", "chip", c.name, "off", start, "err", err)
		c.status |= StatusEraseError
		return
	}
	copy(c.data[start:start+BlockSize], blank)
}

// setMode switches what reads return and tells the hook when read-array
// mode starts or ends.
func (c *Chip) setMode(m mode) {
	was := c.mode == modeArray
	c.mode = m
	if now := m == modeArray; now != was && c.hook != nil {
		c.hook(now)
	}
}

// Name is the chip's name, for logs.
func (c *Chip) Name() string { return c.name }

package pci

import "fmt"

// AddRegisters gives f device-specific configuration registers at
// [off, off+len(init)) after the standard header: init is their reset
// value, mask marks the bits the guest may change, and written (if set) is
// called after each guest write that touches them, with the registers and
// the range [o, o+n) the write covered. written runs under the function's
// lock and must not call back into f. Chipset registers such as the
// i440FX's PAM bytes use it.
func (f *Function) AddRegisters(off int, init, mask []byte, written func(regs []byte, o, n int)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	end := off + len(init)
	if off < firstCapOffset || end > ConfigSize || len(mask) != len(init) || len(init) == 0 {
		return fmt.Errorf("%w: %s: registers [%#x, %#x)", ErrInvalid, f.name, off, end)
	}
	for _, c := range f.caps {
		if off < c.end && c.off-2 < end {
			return fmt.Errorf("%w: %s: registers [%#x, %#x) overlap a capability", ErrInvalid, f.name, off, end)
		}
	}
	copy(f.space[off:], init)
	copy(f.wmask[off:], mask)
	f.caps = append(f.caps, capSlot{off: off, end: end, written: written})
	return nil
}

// HostBridge is the host bridge function at 00:00.0.
func (b *Bus) HostBridge() *Function {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.slots[0]
}

// headerMultiFunction is the header type bit that tells software to probe
// functions 1-7 of a device.
const headerMultiFunction = 0x80

// AddFunction puts f at function fn (1-7) of device slot, whose function 0
// must be present already; function 0's header then says multi-function.
func (b *Bus) AddFunction(slot, fn int, f *Function) error {
	if slot < 0 || slot >= Slots || fn < 1 || fn > 7 {
		return fmt.Errorf("%w: function %d.%d", ErrInvalid, slot, fn)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f0 := b.slots[slot]
	if f0 == nil || b.more[slot][fn-1] != nil {
		return fmt.Errorf("add %s at %d.%d: %w", f.name, slot, fn, ErrBusFull)
	}
	if err := f.attach(b.mmio, b.pio); err != nil {
		return err
	}
	f0.mu.Lock()
	f0.space[regHeaderType] |= headerMultiFunction
	f0.mu.Unlock()
	f.mu.Lock()
	f.space[regHeaderType] |= headerMultiFunction
	f.mu.Unlock()
	b.more[slot][fn-1] = f
	return nil
}

// Package irq names the one thing a device needs to interrupt the guest: a
// line it can drive high or low. Devices depend on this interface rather than
// on the machine, which implements it with KVM_IRQ_LINE, so they can be tested
// with a fake.
package irq

// Line is a level-sensitive interrupt line. SetLevel may be called with the
// device's lock held, so an implementation must not call back into the device.
type Line interface {
	SetLevel(high bool)
}

// LineFunc adapts a function to Line.
type LineFunc func(high bool)

// SetLevel calls f(high).
func (f LineFunc) SetLevel(high bool) { f(high) }

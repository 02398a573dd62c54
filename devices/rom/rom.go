// Package rom answers the MMIO exits of a firmware image that KVM maps
// read-only: the writes (reads never exit), which a ROM, or flash in read
// mode, ignores.
package rom

// ROM is the MMIO side of a read-only image.
type ROM struct{}

// Read answers all ones: KVM serves reads from the mapping, so one that
// exits here found nothing mapped.
func (ROM) Read(_ uint64, data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}

// Write is dropped.
func (ROM) Write(uint64, []byte) {}

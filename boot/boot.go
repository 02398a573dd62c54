// Package boot holds what every loader produces: the CPU state a guest is
// entered with. The loaders themselves live in sub-packages (linux, pvh,
// multiboot); cpu.go turns an Entry into KVM register state.
package boot

// Mode is the processor mode a guest is entered in.
type Mode int

const (
	// RealMode enters at CS:IP in 16-bit real mode (firmware, tiny test guests).
	RealMode Mode = iota
	// Protected32 enters flat 32-bit protected mode with paging off (PVH, multiboot).
	Protected32
	// Long64 enters 64-bit long mode with identity-mapped page tables (Linux 64-bit entry).
	Long64
)

func (m Mode) String() string {
	switch m {
	case RealMode:
		return "real"
	case Protected32:
		return "protected32"
	case Long64:
		return "long64"
	}
	return "unknown"
}

// Entry is where and how the boot CPU starts. Registers not named here start at zero.
type Entry struct {
	Mode Mode
	// IP is the entry point: a linear address, or for RealMode the offset within CS.
	IP uint64
	// CS is the real-mode code segment (RealMode only).
	CS uint16
	// RAX, RBX and RSI carry the boot protocol's arguments (multiboot magic and
	// info in EAX/EBX, PVH start_info in EBX, Linux zero page in RSI).
	RAX, RBX, RSI uint64
	// RSP is the initial stack pointer, if the protocol defines one.
	RSP uint64
}

// Source is a file a loader reads from: the kernel or initrd as an open
// file (or, in tests, a bytes.Reader). Loaders copy it into guest memory in
// place rather than reading it whole onto the heap, so a VMM's own memory
// does not grow with the size of what it boots.
type Source interface {
	ReadAt(p []byte, off int64) (int, error)
	Size() int64
}

package scenario

// The image share of the nested test host: a host directory of large disk
// images (the Debian system's qcow2, hundreds of MiB) comes in read-only
// over 9p instead of inside the outer initramfs, which the outer kernel
// would unpack into the machine's memory. These names are the contract
// between the host side (testhost) and the outer init.
const (
	// ImagesParam is the kernel command-line key whose value is where the
	// outer init mounts the share (an absolute path); no share without it.
	ImagesParam = "vmm.images"
	// ImagesTag is the share's 9p mount tag.
	ImagesTag = "vmm-images"
)

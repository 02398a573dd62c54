# The devices of vmm's outer QEMU (images/outerqemu.go), on top of
# --without-default-devices: the pc machine (i440FX, PIIX, ISA serial for the
# console) with what it creates by default in Debian's build (VGA even with
# -nographic, the parallel port, vmport and vmmouse under TCG, e1000 as the
# default NIC), isa-debug-exit, and the virtio devices the nested test host
# boots with: 9p for the host's root (-virtfs) and virtio-serial for a test
# program's output.
CONFIG_I440FX=y
CONFIG_VGA_PCI=y
CONFIG_PARALLEL=y
CONFIG_VMPORT=y
CONFIG_VMMOUSE=y
CONFIG_E1000_PCI=y
CONFIG_ISA_DEBUG=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_SERIAL=y
CONFIG_VIRTIO_9P=y

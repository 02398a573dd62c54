#!/bin/bash
# The README's main job: boot Debian's stock kernel with the guest agent as
# init under vmm. Directly where /dev/kvm is hardware virtualization; inside
# the nested test host where it is not.
set -euo pipefail
cd "$(dirname "$0")/.."
checks=boot,cpus,clocksource
if bin/vmm probe --json 2>/dev/null | grep -q '"can_boot_linux": true'; then
	eval "$(go run ./images/cmd/mkimages -out build/images | grep -E '^(kernel|guest)=')"
	echo "vmm: booting Debian's kernel directly on this host's KVM" >&2
	exec bin/vmm run --kernel "$kernel" --initrd "$guest" --memory 512M --timeout 120s \
		--cmdline "console=ttyS0 panic=-1 i8042.noaux vmm.checks=$checks"
fi
echo "vmm: no hardware KVM here (/dev/kvm: $(bin/vmm probe --json 2>/dev/null | sed -n 's/.*"virtualization": "\(.*\)".*/\1/p')); booting the guest under vmm inside the nested test host (QEMU/TCG, real KVM inside)" >&2
exec go run ./images/cmd/nested -checks "$checks"

#!/bin/bash
# Prints VMM_TEST_BZIMAGE=... and VMM_TEST_VMLINUX=... for the loader tests
# that need real kernels: Debian's bzImage and the vmlinux ELF unpacked from
# it (images.Vmlinux), both as mkimages (`make images`) leaves them.
set -euo pipefail
cd "$(dirname "$0")/.."
k=$(ls build/images/kernel/vmlinuz-* | head -n 1)
v=build/images/vmlinux
[[ -f $v ]] || { echo "test-kernels.sh: $v missing: run mkimages (make images) first" >&2; exit 1; }
echo "VMM_TEST_BZIMAGE=$PWD/$k VMM_TEST_VMLINUX=$PWD/$v"

#!/bin/bash
# Prints VMM_TEST_BZIMAGE=... and VMM_TEST_VMLINUX=... for the loader tests
# that need real kernels: Debian's bzImage from `make images`, and the
# vmlinux ELF inside it (its XZ payload, located by the setup header).
set -euo pipefail
cd "$(dirname "$0")/.."
k=$(ls build/images/kernel/vmlinuz-* | head -n 1)
ss=$(od -An -tu1 -j$((0x1f1)) -N1 "$k" | tr -d ' ')
[[ $ss == 0 ]] && ss=4
po=$(od -An -tu4 -j$((0x248)) -N4 "$k" | tr -d ' ')
out=build/images/kernel/vmlinux
# xz stops after the payload; tail then dies of SIGPIPE, which is fine.
(tail -c +$(((ss + 1) * 512 + po + 1)) "$k" || true) | xz -dc --single-stream > "$out.tmp"
mv "$out.tmp" "$out"
echo "VMM_TEST_BZIMAGE=$PWD/$k VMM_TEST_VMLINUX=$PWD/$out"

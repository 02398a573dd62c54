#!/bin/bash
# Prints where the host KVM tests ran, from bin/kvmexec's summary lines
# ("PKG tests=N exit=C seconds=S", one per package run in the nested host).
set -euo pipefail
f=$1
if [[ ! -s $f ]]; then
	echo "host KVM tests: all ran on this host's /dev/kvm (none in the nested test host)"
	exit 0
fi
awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	n += v["tests"]; s += v["seconds"]; p++ }
	END { printf "host KVM tests: %d top-level tests of %d packages ran in the nested test host (%.0f s of outer machines)\n", n, p, s }' "$f"

#!/bin/bash
# Installs what the tests need on a fresh Debian machine: the named Debian
# packages (only those missing) and staticcheck. Safe to run repeatedly.
set -euo pipefail
missing=()
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "setup: missing Debian packages ${missing[*]}; run as root or install them" >&2
		exit 1
	fi
	echo "setup: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
gobin=$(go env GOPATH)/bin
if [[ ! -x $gobin/staticcheck ]]; then
	echo "setup: installing staticcheck"
	go install honnef.co/go/tools/cmd/staticcheck@latest
fi

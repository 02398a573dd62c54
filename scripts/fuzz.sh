#!/bin/bash
# Runs every Go fuzz target in the module for a bounded time each.
set -euo pipefail
fuzztime=${1:-15s}
status=0
while read -r dir; do
	pkg=./${dir#"$PWD"/}
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | sort -u); do
		echo "fuzz: $pkg $target ($fuzztime)"
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" || status=1
	done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r -n1 dirname | sort -u | sed "s|^\.|$PWD|")
exit $status

#!/bin/bash
# Runs every Go fuzz target in the module for a bounded time each. A target
# fails only on a real failure (Go writes the failing input under
# testdata/fuzz); Go's fuzzer also reports "context deadline exceeded" when
# -fuzztime runs out while it is minimising a new input, which is not a
# failure of the code under test.
set -euo pipefail
fuzztime=${1:-4s}
status=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
while read -r dir; do
	pkg=./${dir#"$PWD"/}
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | sort -u); do
		echo "fuzz: $pkg $target ($fuzztime)"
		if go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" -fuzzminimizetime=1s "$pkg" >"$out" 2>&1; then
			tail -n 1 "$out"
			continue
		fi
		cat "$out"
		if grep -q "Failing input written" "$out" || ! grep -q "context deadline exceeded" "$out"; then
			echo "fuzz: $pkg $target FAILED"
			status=1
		else
			echo "fuzz: $pkg $target: fuzz time ran out while minimising (no failing input); not a failure"
		fi
	done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r -n1 dirname | sort -u | sed "s|^\.|$PWD|")
exit $status

package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

var errCPUList = errors.New("malformed CPU list")

// maxCPUs bounds what a CPU list may claim, so a hostile or corrupt list
// ("0-4294967295") cannot make the count meaningless.
const maxCPUs = 1 << 16

// countCPUList counts the CPUs in a sysfs CPU list such as "0-3,5,7-8".
func countCPUList(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a >= maxCPUs {
			return 0, fmt.Errorf("%q: %w", part, errCPUList)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b >= maxCPUs {
				return 0, fmt.Errorf("%q: %w", part, errCPUList)
			}
		}
		n += b - a + 1
		if n > maxCPUs {
			return 0, fmt.Errorf("more than %d CPUs: %w", maxCPUs, errCPUList)
		}
	}
	return n, nil
}

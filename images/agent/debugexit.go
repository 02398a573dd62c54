package main

// debugExitByte is the value written to the debug-exit port for k failed
// checks: at least 1 (0 would read as success, exit status 1) and at most
// 127 (2k+1 must fit an 8-bit exit status).
func debugExitByte(k int) byte {
	switch {
	case k < 1:
		return 1
	case k > 127:
		return 127
	}
	return byte(k)
}

package main

import "strings"

// parseKernelLog splits the syslog(2) buffer into messages without their
// "<level>" and "[ timestamp]" prefixes, so checks match message text only.
func parseKernelLog(buf []byte) []string {
	var out []string
	for _, l := range strings.Split(string(buf), "\n") {
		if strings.HasPrefix(l, "<") {
			if i := strings.IndexByte(l, '>'); i > 0 && i <= 4 {
				l = l[i+1:]
			}
		}
		if strings.HasPrefix(l, "[") {
			if i := strings.IndexByte(l, ']'); i > 0 {
				l = strings.TrimPrefix(l[i+1:], " ")
			}
		}
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

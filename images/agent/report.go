package main

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// The agent's console protocol: every line starts with linePrefix so the
// harness can pick them out of the kernel's own messages.
const linePrefix = "VMM-AGENT: "

func startLine() string { return linePrefix + "start\n" }

func checkLine(name string, pass bool, detail string) string {
	return fmt.Sprintf("%scheck=%s result=%s detail=%s\n", linePrefix, name, result(pass), jsonString(detail))
}

func summaryLine(pass, fail int) string {
	return fmt.Sprintf("%ssummary pass=%d fail=%d\n", linePrefix, pass, fail)
}

func actionLine(action string) string {
	return fmt.Sprintf("%saction=%s\n", linePrefix, action)
}

func result(pass bool) string {
	if pass {
		return "pass"
	}
	return "fail"
}

// jsonString quotes s as a JSON string on one line, without HTML escaping.
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return `""` // a string always encodes; keep the line well formed anyway
	}
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

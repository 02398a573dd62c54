package scenario

import (
	"strings"
)

// AgentStart is the guest agent's first line; the time to it is what the
// benchmark measures.
const AgentStart = "VMM-AGENT: start"

const agentCheck = "VMM-AGENT: check="

// AgentCheck is one "VMM-AGENT: check=<name> result=<r> detail=<json>" line.
type AgentCheck struct {
	Name, Result string
}

// IsAgentStart reports whether a guest console line is the agent's first
// line. Kernel output may precede it on the same line.
func IsAgentStart(line string) bool {
	return strings.HasSuffix(strings.TrimRight(line, "\r\n"), AgentStart)
}

// ParseAgentCheck decodes a check line of the guest agent. The guest is not
// trusted: anything that does not look exactly like a check line is ignored.
func ParseAgentCheck(line string) (AgentCheck, bool) {
	i := strings.Index(line, agentCheck)
	if i < 0 {
		return AgentCheck{}, false
	}
	rest := line[i+len(agentCheck):]
	name, rest, ok := strings.Cut(rest, " result=")
	if !ok || !namePattern.MatchString(name) {
		return AgentCheck{}, false
	}
	result, _, _ := strings.Cut(rest, " ")
	result = strings.TrimRight(result, "\r\n")
	if result != Pass && result != Fail {
		return AgentCheck{}, false
	}
	return AgentCheck{Name: name, Result: result}, true
}

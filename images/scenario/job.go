package scenario

import (
	"errors"
	"fmt"
	"path"
)

// Exec mode of the nested test host: instead of the scenario suite, the
// outer init runs one program of the host (a go test binary, a benchmark)
// with the host's root shared read-only over 9p, so every file is at its
// host path. These names are the contract between the host side
// (testhost.Exec) and the outer init.
const (
	// ExecParam is the kernel command-line key whose value is the job
	// file's path on the host.
	ExecParam = "vmm.exec"
	// ExecRootTag is the 9p mount tag of the host's root.
	ExecRootTag = "hostroot"
	// ExecPortName is the virtio-serial port the program's output leaves by.
	ExecPortName = "vmm.exec.out"
	// ExecInsideEnv is set to "1" in the program's environment, so it can
	// say where it ran.
	ExecInsideEnv = "VMM_IN_NESTED_HOST"
)

// Job is one program the outer init runs in exec mode.
type Job struct {
	// Args is the program (an absolute host path) and its arguments.
	Args []string `json:"args"`
	// Dir is the working directory, an absolute host path.
	Dir string `json:"dir"`
	// Env is the program's whole environment.
	Env []string `json:"env"`
	// TimeoutS, if > 0, bounds the run: the program's process group is
	// killed then.
	TimeoutS float64 `json:"timeout_s,omitempty"`
}

// Validate says what is wrong with a job, if anything.
func (j Job) Validate() error {
	if len(j.Args) == 0 {
		return errors.New("no program")
	}
	if !path.IsAbs(j.Args[0]) {
		return fmt.Errorf("program %q is not an absolute path", j.Args[0])
	}
	if !path.IsAbs(j.Dir) {
		return fmt.Errorf("working directory %q is not an absolute path", j.Dir)
	}
	if j.TimeoutS < 0 {
		return fmt.Errorf("negative timeout %v", j.TimeoutS)
	}
	return nil
}

package main

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts a child in its own process group (killed as a group) and
// has the kernel kill it if the harness dies without cleaning up.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

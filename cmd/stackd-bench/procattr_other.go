//go:build unix && !linux

package main

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts a child in its own process group (killed as a group).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// raiseNoFile leaves the limit alone outside Linux.
func raiseNoFile(*bench) {}

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

// raiseNoFile raises the harness's soft RLIMIT_NOFILE to its hard limit:
// the fan-out figures hold thousands of connections (the children, stackd
// among them, inherit the raised limit).
func raiseNoFile(b *bench) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.logf("RLIMIT_NOFILE: %v", err)
		return
	}
	if lim.Cur < lim.Max {
		old := lim.Cur
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			b.logf("RLIMIT_NOFILE: raising %d to %d: %v", old, lim.Max, err)
			return
		}
	}
	b.logf("RLIMIT_NOFILE of the harness: %d (hard %d)", lim.Cur, lim.Max)
}

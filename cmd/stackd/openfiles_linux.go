package main

import "syscall"

// raiseOpenFiles raises the soft open-files limit (RLIMIT_NOFILE) to the
// hard limit: every event stream holds a descriptor. (Go's runtime does
// the same at start since Go 1.19; this makes it explicit and reports
// the outcome.)
func raiseOpenFiles() openFilesLimit {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return openFilesLimit{Err: err}
	}
	out := openFilesLimit{Soft: rl.Cur, Hard: rl.Max, Before: rl.Cur, Known: true}
	if rl.Cur >= rl.Max {
		return out
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		out.Err = err
		return out
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		out.Err = err
		return out
	}
	out.Soft, out.Hard = rl.Cur, rl.Max
	return out
}

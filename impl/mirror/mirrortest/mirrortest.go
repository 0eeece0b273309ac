// Package mirrortest serves git repositories over a network protocol on
// loopback for tests: git daemon (git://) started from the git CLI, and
// git http-backend (smart HTTP, optionally TLS) behind httptest; and it
// checks that no connection reached a listener; Proxy forwards to such a
// server, records its sessions and can stall a transfer mid-pack.
package mirrortest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a loopback port nobody listens on (at the time).
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// StartDaemon serves every repository under base with git daemon and
// returns "host:port". Readiness is signalled by the daemon's own "Ready
// to rumble" log line, not by sleeping.
func StartDaemon(t testing.TB, base string) string {
	t.Helper()
	var lastErr string
	for attempt := 0; attempt < 3; attempt++ { // the free port may be taken in between
		port := FreePort(t)
		cmd := exec.Command("git", "daemon", "--verbose", "--export-all", "--informative-errors",
			"--base-path="+base, "--reuseaddr", "--listen=127.0.0.1",
			fmt.Sprintf("--port=%d", port), "--enable=receive-pack", base)
		cmd.Env = append(os.Environ(), "HOME="+base, "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		// Its own process group: `git daemon` runs git-daemon as a child,
		// and the whole group is killed at cleanup.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan bool, 1)
		var log bytes.Buffer
		go func() {
			sc := bufio.NewScanner(stderr)
			signalled := false
			for sc.Scan() {
				if !signalled {
					log.WriteString(sc.Text() + "\n")
					if strings.Contains(sc.Text(), "Ready to rumble") {
						signalled = true
						ready <- true
					}
				}
			}
			if !signalled {
				ready <- false
			}
		}()
		select {
		case ok := <-ready:
			if ok {
				t.Cleanup(func() {
					_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
					_ = cmd.Wait()
				})
				return fmt.Sprintf("127.0.0.1:%d", port)
			}
			_ = cmd.Wait()
			lastErr = log.String()
		case <-time.After(10 * time.Second): // failure guard, not synchronisation
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
			t.Fatal("git daemon did not start")
		}
	}
	t.Fatalf("git daemon failed to start: %s", lastErr)
	return ""
}

package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// TestServeShutsDownGracefully builds the binary, serves a repository, and
// stops it with SIGTERM: it logs the shutdown, ends the open event stream
// (served off its request's goroutine: net/http's shutdown does not see
// it) with a clean end of its body, and exits 0.
func TestServeShutsDownGracefully(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "stackd")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	r := gittest.New(t)
	r.Commit("initial", map[string]string{"README": "x\n"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	cmd := exec.Command(bin, "serve", "--log-format", "json")
	cmd.Dir = r.Dir // serve the repository we start in
	cmd.Env = append(os.Environ(), "STACKD_ADDR="+addr, "STACKD_DATA_DIR="+t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitFor := func(want string) {
		t.Helper()
		timeout := time.After(30 * time.Second) // failure guard
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stackd exited before logging %q", want)
				}
				if strings.Contains(l, want) {
					return
				}
			case <-timeout:
				_ = cmd.Process.Kill()
				t.Fatalf("no %q in the log", want)
			}
		}
	}
	waitFor(`"msg":"stackd listening"`)
	resp, err := http.Get("http://" + addr + "/api/v1/repos/local")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"kind":"local"`) {
		t.Fatalf("repo: %d %s", resp.StatusCode, body)
	}
	stream, err := http.Get("http://" + addr + "/api/v1/repos/local/events")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	events := bufio.NewReader(stream.Body)
	if first, err := events.ReadString('\n'); err != nil || !strings.HasPrefix(first, "id: ") {
		t.Fatalf("event stream: %q, %v", first, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(`"msg":"shutting down"`)
	if rest, err := io.ReadAll(events); err != nil {
		t.Fatalf("the event stream ended with %v after %q, want a clean end", err, rest)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

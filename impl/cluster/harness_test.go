package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/mirror/mirrortest"
	"github.com/stackd/stackd/impl/stackdbin"
)

// The end-to-end tests of replicas run the real binary: several `stackd
// serve` processes on loopback ports, one PostgreSQL database (a
// throwaway cluster, impl/store/pgtest) and one shared data directory,
// mirroring an upstream that git daemon serves through a TCP proxy that
// records every upload-pack session and can stall a transfer.

// stackdBinary builds cmd/stackd once per test binary (with the race
// detector when the tests have it: the packages are then shared with `go
// test -race ./...` in the build cache).
func stackdBinary(t *testing.T) string { return stackdbin.Path(t, raceEnabled) }

// logBuffer collects a replica's log lines (JSON).
type logBuffer struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
}

func (l *logBuffer) add(line []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.raw.Write(line)
	l.raw.WriteByte('\n')
	var m map[string]any
	if json.Unmarshal(line, &m) == nil {
		l.lines = append(l.lines, m)
	}
}

// count returns how many lines have msg and every key=value of kv.
func (l *logBuffer) count(msg string, kv ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, m := range l.lines {
		if m["msg"] != msg {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if fmt.Sprint(m[kv[i]]) != kv[i+1] {
				continue next
			}
		}
		n++
	}
	return n
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw.String()
}

// replica is one `stackd serve` process.
type replica struct {
	name string
	url  string // http://127.0.0.1:port
	cmd  *exec.Cmd
	logs *logBuffer
	done chan struct{} // closed when the process exited
	c    *client.ClientWithResponses
	// token, when set, is sent as a bearer token by c and do.
	token string
	// metricsAddr is its metrics listener (replicaConfig.metrics).
	metricsAddr string
}

// replicaConfig is what every replica of one test shares.
type replicaConfig struct {
	databaseURL string
	dataDir     string
	extra       []string // more flags
	env         []string
	// oidc: the replicas sign users in (--base-url is each replica's own
	// URL; extra holds the provider's flags).
	oidc bool
	// metrics: each replica gets a metrics listener (--metrics-addr).
	metrics bool
}

// startReplica starts a replica and waits for its "stackd listening" line.
func startReplica(t *testing.T, name string, rc replicaConfig) *replica {
	t.Helper()
	bin := stackdBinary(t)
	port := mirrortest.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := append([]string{"serve", "--addr", addr, "--replica-id", name, "--data-dir", rc.dataDir,
		"--log-format", "json", "--allow-private-remotes", "--sync-interval", "0",
		"--rate-limit", "off", "--sync-rate-limit", "off", "--auth-failure-rate-limit", "off"}, rc.extra...)
	if rc.oidc {
		args = append(args, "--base-url", "http://"+addr)
	}
	metricsAddr := ""
	if rc.metrics {
		metricsAddr = fmt.Sprintf("127.0.0.1:%d", mirrortest.FreePort(t))
		args = append(args, "--metrics-addr", metricsAddr)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir() // no repository here
	cmd.Env = append(os.Environ(), "STACKD_DATABASE_URL="+rc.databaseURL, "STACKD_DEBUG=1")
	cmd.Env = append(cmd.Env, rc.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{name: name, url: "http://" + addr, cmd: cmd, logs: &logBuffer{}, done: make(chan struct{}), metricsAddr: metricsAddr}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		signalled := false
		for sc.Scan() {
			r.logs.add(sc.Bytes())
			if !signalled && strings.Contains(sc.Text(), `"msg":"stackd listening"`) {
				signalled = true
				close(listening)
			}
		}
		_ = cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		r.stop()
		for _, bad := range []string{"WARNING: DATA RACE", "panic:"} {
			if strings.Contains(r.logs.String(), bad) {
				t.Errorf("replica %s: %s", name, bad)
			}
		}
		if t.Failed() {
			t.Logf("log of replica %s:\n%s", name, r.logs.String())
		}
	})
	select {
	case <-listening:
	case <-r.done:
		t.Fatalf("replica %s exited:\n%s", name, r.logs.String())
	case <-time.After(60 * time.Second): // failure guard
		t.Fatalf("replica %s not listening:\n%s", name, r.logs.String())
	}
	c, err := client.NewClientWithResponses(r.url, client.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		if r.token != "" {
			req.Header.Set("Authorization", "Bearer "+r.token)
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	return r
}

// stop ends the replica gracefully (SIGTERM) and waits.
func (r *replica) stop() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
	}
}

// kill ends the replica with SIGKILL, as a crash would, and waits.
func (r *replica) kill() {
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.done
}

// do sends a raw request and returns the status, headers and body.
func (r *replica) do(t *testing.T, method, path string, body io.Reader, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), method, r.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, r.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // failure guard
	t.Cleanup(cancel)
	return c
}

// within polls check until it is true, failing after d (a deadline, not
// a fixed wait).
func within(t *testing.T, d time.Duration, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond) // polling the replicas' answers
	}
}

// upstream is the repository the replicas mirror: a work repository that
// pushes to a bare one, which git daemon serves behind a proxy.
type upstream struct {
	work  *gittest.Repo
	bare  string
	proxy *mirrortest.Proxy
	url   string // git://proxy/name
}

func newUpstream(t *testing.T, name string) *upstream {
	t.Helper()
	w := gittest.New(t)
	w.Commit("first", map[string]string{"a.txt": "a\n"})
	w.Git("branch", "feature")
	base := filepath.Join(t.TempDir(), "served")
	bare := filepath.Join(base, name)
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	w.Run(base, "clone", "-q", "--bare", w.Dir, bare)
	w.Git("remote", "add", "origin", bare)
	p := mirrortest.StartProxy(t, mirrortest.StartDaemon(t, base))
	return &upstream{work: w, bare: bare, proxy: p, url: "git://" + p.Addr() + "/" + name}
}

// change commits on main and pushes it; it returns the new commit.
func (u *upstream) change(msg string) string {
	id := u.work.Commit(msg, map[string]string{msg + ".txt": msg + "\n"})
	u.work.Git("push", "-q", "origin", "HEAD:refs/heads/main")
	return id
}

// events follows a replica's event stream of one repository.
type eventStream struct {
	ch   chan streamEvent
	stop context.CancelFunc
}

type streamEvent struct {
	typ  string
	data string
}

func (r *replica) events(t *testing.T, repo string) *eventStream {
	t.Helper()
	c, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(c, "GET", r.url+"/api/v1/repos/"+repo+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		cancel()
		t.Fatalf("event stream of %s on %s: %v %v", repo, r.name, err, resp)
	}
	s := &eventStream{ch: make(chan streamEvent, 256), stop: cancel}
	t.Cleanup(cancel)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev streamEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event:"):
				ev.typ = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "data:"):
				ev.data = strings.TrimSpace(strings.TrimPrefix(line, "data:"))
			case line == "":
				if ev.typ != "" {
					s.ch <- ev
				}
				ev = streamEvent{}
			}
		}
		close(s.ch)
	}()
	select {
	case ev := <-s.ch:
		if ev.typ != "connected" {
			t.Fatalf("first event %+v", ev)
		}
	case <-time.After(20 * time.Second): // failure guard
		t.Fatal("no connected event")
	}
	return s
}

// waitFor returns the first event of type typ whose data contains want,
// failing after d.
func (s *eventStream) waitFor(t *testing.T, d time.Duration, typ, want string) streamEvent {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-s.ch:
			if !ok {
				t.Fatalf("the event stream ended before a %s event with %s", typ, want)
			}
			if ev.typ == typ && strings.Contains(ev.data, want) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event with %s within %s", typ, want, d)
		}
	}
}

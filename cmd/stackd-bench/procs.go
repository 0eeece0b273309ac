package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procGroup owns every long-running child process of the harness (git
// daemon, stackd, the plain byte server) and kills them all on exit, also
// after Ctrl-C. Each child runs in its own process group, so the group is
// killed with it (git daemon forks upload-pack).
type procGroup struct {
	mu     sync.Mutex
	live   map[*child]bool
	logDir string
	seq    int
}

func newProcGroup(logDir string) *procGroup {
	return &procGroup{live: map[*child]bool{}, logDir: logDir}
}

// child is one started process.
type child struct {
	name    string
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{} // closed when the process has exited
	exitErr error
	logPath string
}

// start starts cmd as a child named name, its stderr written line by line
// to a log file and passed to onLine (which may be nil).
func (g *procGroup) start(name string, cmd *exec.Cmd, onLine func(string)) (*child, error) {
	g.mu.Lock()
	g.seq++
	logPath := filepath.Join(g.logDir, fmt.Sprintf("%02d-%s.log", g.seq, name))
	g.mu.Unlock()
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	setProcAttr(cmd)
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), logPath: logPath}
	c.started = time.Now()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	g.mu.Lock()
	g.live[c] = true
	g.mu.Unlock()
	go func() {
		r := bufio.NewReaderSize(stderr, 64<<10)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				_, _ = logf.WriteString(line)
				if onLine != nil {
					onLine(strings.TrimRight(line, "\n"))
				}
			}
			if err != nil {
				break
			}
		}
		c.exitErr = cmd.Wait()
		logf.Close()
		g.mu.Lock()
		delete(g.live, c)
		g.mu.Unlock()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the child has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// kill kills the child's process group and waits for it.
func (c *child) kill() {
	if c.exited() {
		return
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
}

// stop asks the child to shut down (SIGTERM) and kills it if it has not
// exited within grace.
func (c *child) stop(grace time.Duration) error {
	if c.exited() {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case <-t.C: // failure guard
		c.kill()
		return fmt.Errorf("%s did not stop within %s after SIGTERM; killed", c.name, grace)
	}
}

// killAll kills every live child.
func (g *procGroup) killAll() {
	g.mu.Lock()
	var all []*child
	for c := range g.live {
		all = append(all, c)
	}
	g.mu.Unlock()
	for _, c := range all {
		c.kill()
	}
}

// logTail is the end of a child's log, for error messages.
func (c *child) logTail() string {
	raw, err := os.ReadFile(c.logPath)
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(raw))
	if len(s) > 1500 {
		s = "..." + s[len(s)-1500:]
	}
	return s
}

// freePort returns a loopback port nobody listens on (at the time).
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return port, ln.Close()
}

// startDaemon serves every repository under base with git daemon on
// loopback and returns its "host:port", once the daemon has logged that it
// is ready.
func (g *procGroup) startDaemon(ctx context.Context, env []string, base string) (string, error) {
	var last error
	for range 3 { // the free port may be taken in between
		port, err := freePort()
		if err != nil {
			return "", err
		}
		cmd := exec.Command("git", "daemon", "--verbose", "--export-all", "--informative-errors",
			"--base-path="+base, "--reuseaddr", "--listen=127.0.0.1", "--port="+strconv.Itoa(port), base)
		cmd.Env = env
		ready := make(chan struct{})
		var once sync.Once
		c, err := g.start("git-daemon", cmd, func(line string) {
			if strings.Contains(line, "Ready to rumble") {
				once.Do(func() { close(ready) })
			}
		})
		if err != nil {
			return "", err
		}
		guard := time.NewTimer(30 * time.Second) // failure guard, not synchronisation
		select {
		case <-ready:
			guard.Stop()
			return "127.0.0.1:" + strconv.Itoa(port), nil
		case <-c.done:
			last = fmt.Errorf("git daemon exited: %s", c.logTail())
		case <-guard.C:
			c.kill()
			return "", fmt.Errorf("git daemon not ready within 30s: %w", errTimeout)
		case <-ctx.Done():
			c.kill()
			return "", ctx.Err()
		}
		guard.Stop()
	}
	return "", last
}

// viewBuilt is the server's log line for one view build:
// {"msg":"view built","repo":"bench","full":true,"branches":N,"recomputed":K,"ms":12.3}.
type viewBuilt struct {
	Repo       string  `json:"repo"`
	Full       bool    `json:"full"`
	Branches   int     `json:"branches"`
	Recomputed int     `json:"recomputed"`
	MS         float64 `json:"ms"`
}

// stackd is one running server process.
type stackd struct {
	*child
	addr    string
	base    string // http://addr
	dataDir string

	mu        sync.Mutex
	builds    []viewBuilt
	changed   chan struct{} // closed and replaced on every new build line
	listening chan struct{}
}

// stackdOpts are the parts of a server's command line that vary.
type stackdOpts struct {
	label   string // for the log file name
	dataDir string
	cwd     string   // --cwd: the working repository to serve
	config  string   // --config file
	dir     string   // the process's working directory (not inside a repository)
	args    []string // more flags
	env     []string // more environment
}

// startStackd starts the server and waits until /healthz answers (and
// /readyz when ready is set).
func (b *bench) startStackd(ctx context.Context, o stackdOpts, ready bool) (*stackd, error) {
	var last error
	for range 3 { // the free port may be taken in between
		s, err := b.spawnStackd(o)
		if err != nil {
			return nil, err
		}
		err = s.waitHealthy(ctx, b.opt.timeout, ready)
		if err == nil {
			return s, nil
		}
		s.kill()
		last = err
		if !strings.Contains(s.logTail(), "address already in use") {
			break
		}
	}
	return nil, last
}

func (b *bench) spawnStackd(o stackdOpts) (*stackd, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"serve", "--addr", addr, "--data-dir", o.dataDir, "--log-format", "json",
		"--sync-interval", "0", "--rate-limit", "off", "--sync-rate-limit", "off", "--allow-local-remotes",
		"--allow-private-remotes"} // the upstream is a git daemon on loopback
	if o.cwd != "" {
		args = append(args, "--cwd", o.cwd)
	}
	if o.config != "" {
		args = append(args, "--config", o.config)
	}
	args = append(args, o.args...) // later flags win
	cmd := exec.Command(b.opt.stackd, args...)
	cmd.Dir = o.dir
	cmd.Env = append(slices.Clone(b.git.env), o.env...)
	s := &stackd{addr: addr, base: "http://" + addr, dataDir: o.dataDir, changed: make(chan struct{}), listening: make(chan struct{})}
	var once sync.Once
	c, err := b.procs.start("stackd-"+o.label, cmd, func(line string) {
		if !strings.HasPrefix(line, "{") {
			return
		}
		var l struct {
			Msg string `json:"msg"`
			viewBuilt
		}
		if json.Unmarshal([]byte(line), &l) != nil {
			return
		}
		switch l.Msg {
		case "stackd listening":
			once.Do(func() { close(s.listening) })
		case "view built":
			s.mu.Lock()
			s.builds = append(s.builds, l.viewBuilt)
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
		}
	})
	if err != nil {
		return nil, err
	}
	s.child = c
	return s, nil
}

// waitHealthy waits for GET /healthz (and /readyz) to answer 200. The
// server's "stackd listening" log line wakes the wait at once; until then
// the probe is retried every 20 ms, as a readiness probe is.
func (s *stackd) waitHealthy(ctx context.Context, timeout time.Duration, ready bool) error {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("stackd not healthy within %s: %w", timeout, errTimeout))
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	listening := s.listening
	paths := []string{"/healthz"}
	if ready {
		paths = append(paths, "/readyz")
	}
	for _, p := range paths {
		for {
			if probe(ctx, s.base+p) {
				break
			}
			select {
			case <-listening:
				listening = nil // probe again now; then on the ticker
			case <-tick.C:
			case <-s.done:
				return fmt.Errorf("stackd exited (%v) before it was healthy; log %s:\n%s", s.exitErr, s.logPath, s.logTail())
			case <-ctx.Done():
				return fmt.Errorf("%w; log %s", context.Cause(ctx), s.logPath)
			}
		}
	}
	return nil
}

var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func probe(ctx context.Context, url string) bool {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// buildCount is the number of "view built" lines so far.
func (s *stackd) buildCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.builds)
}

// waitBuild waits up to grace for a "view built" line of repo after the
// first since lines. The server writes the line before it answers the
// request that built the view, so grace only covers the pipe between the
// processes; a server that does not log the line costs grace once (see
// bench.buildLine).
func (s *stackd) waitBuild(since int, repo string, grace time.Duration) (viewBuilt, bool) {
	t := time.NewTimer(grace)
	defer t.Stop()
	for {
		s.mu.Lock()
		for _, vb := range s.builds[min(since, len(s.builds)):] {
			if vb.Repo == repo {
				s.mu.Unlock()
				return vb, true
			}
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-s.done:
			return viewBuilt{}, false
		case <-t.C:
			return viewBuilt{}, false
		}
	}
}

// peakRSS is the process's VmHWM in bytes.
func (s *stackd) peakRSS() (float64, error) {
	return procStatusBytes(s.cmd.Process.Pid, "VmHWM")
}

// procStatusBytes is a size field (key: VmHWM, VmRSS, ...) of a process's
// /proc/<pid>/status, in bytes.
func procStatusBytes(pid int, key string) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %q: %w", key, line, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/<pid>/status", key)
}

// startByteServer starts the plain byte server (this program's serve-bytes
// mode) and returns its base URL once it listens.
func (b *bench) startByteServer(ctx context.Context, file, gzFile string) (*child, string, error) {
	args := []string{"-file", file}
	if gzFile != "" {
		args = append(args, "-gzip-file", gzFile)
	}
	return b.startHelper(ctx, "serve-bytes", serveBytesReady, args...)
}

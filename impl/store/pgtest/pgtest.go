// Package pgtest runs throwaway PostgreSQL clusters for tests, with the
// binaries of the machine's PostgreSQL (Debian's postgresql package puts
// them in /usr/lib/postgresql/<version>/bin).
//
// A cluster lives in a new temporary directory: initdb makes it (a
// superuser "stackd" with a random password, scram-sha-256 for every
// connection, no fsync), and the postgres server listens only on a Unix
// socket in that directory (no TCP port, so nothing can clash). The test
// waits for it by polling the server's own readiness mark in
// postmaster.pid (what pg_ctl -w reads) against a deadline, never by
// sleeping; Stop is a fast shutdown that waits for the server to exit;
// the directory is removed at cleanup. The server is a child of the test
// process and gets SIGQUIT if that process dies.
//
// initdb and postgres refuse to run as root. Run as root (CI), pgtest
// runs them as the OS user named by STACKD_PGTEST_USER, default
// "postgres" (the user Debian's package creates), and hands the cluster's
// directory to that user.
//
// Where there are no binaries (or, as root, no such user) the tests that
// need a cluster skip, saying why; with STACKD_PGTEST=require (set by
// .ci/run) they fail instead, so CI cannot pass without running them.
// STACKD_PGTEST_BINDIR names the directory of initdb and postgres when
// they are elsewhere.
package pgtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables read by the package.
const (
	EnvRequire = "STACKD_PGTEST"        // "require": fail instead of skip
	EnvUser    = "STACKD_PGTEST_USER"   // the OS user when running as root
	EnvBinDir  = "STACKD_PGTEST_BINDIR" // where initdb and postgres are
)

// Superuser is the cluster's superuser.
const Superuser = "stackd"

// port is the server's port number: only the name of its socket file,
// since the server does not listen on TCP.
const port = 5432

// readyTimeout bounds initdb, start-up and shutdown.
const readyTimeout = 60 * time.Second

// errNoPostgres is a reason to skip: the machine cannot run a cluster.
var errNoPostgres = errors.New("no PostgreSQL to test with")

// Cluster is a running (or stopped) throwaway PostgreSQL server.
type Cluster struct {
	dir      string // the temporary directory: data/, the socket, server.log
	bin      string // directory of initdb and postgres
	cred     *syscall.Credential
	password string
	dbs      atomic.Int64

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the server process has exited
}

// Start makes and starts a cluster for this test; it is stopped and
// removed at the test's cleanup. Without PostgreSQL the test skips (or
// fails, with STACKD_PGTEST=require).
func Start(t testing.TB) *Cluster {
	t.Helper()
	c, err := newCluster()
	if err != nil {
		skipOrFail(t, err)
	}
	t.Cleanup(c.Close)
	return c
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, errNoPostgres) && os.Getenv(EnvRequire) != "require" {
		t.Skipf("skipping: %v (install Debian's postgresql package; see impl/store/pgtest)", err)
	}
	t.Fatalf("pgtest: %v", err)
}

// shared is the cluster of a test binary (Shared), stopped by Main.
var shared struct {
	main bool
	once sync.Once
	c    *Cluster
	err  error
}

// Main runs the tests of a package that uses Shared and then stops the
// shared cluster: call it from TestMain, as os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	shared.main = true
	code := m.Run()
	if shared.c != nil {
		shared.c.Close()
	}
	return code
}

// Shared returns the one cluster of this test binary, starting it on
// first use; the package's TestMain must run Main. Tests that use it take
// their own database (NewDatabase) and must not stop it.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if !shared.main {
		t.Fatal("pgtest.Shared needs os.Exit(pgtest.Main(m)) in the package's TestMain, which stops the cluster")
	}
	shared.once.Do(func() { shared.c, shared.err = newCluster() })
	if shared.err != nil {
		skipOrFail(t, shared.err)
	}
	return shared.c
}

// NewDatabase creates an empty database in the cluster and returns its
// URL.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := "test_" + strconv.FormatInt(c.dbs.Add(1), 10)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	return c.URL(name)
}

// URL is the postgres:// URL of database db in the cluster, with the
// superuser's password; the host is the socket's directory.
func (c *Cluster) URL(db string) string {
	q := url.Values{"host": {c.dir}, "port": {strconv.Itoa(port)}}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(Superuser, c.password), Path: "/" + db, RawQuery: q.Encode()}
	return u.String()
}

// Password is the superuser's password (tests check it never shows).
func (c *Cluster) Password() string { return c.password }

// SocketDir is the directory of the server's Unix socket.
func (c *Cluster) SocketDir() string { return c.dir }

// Stop shuts the server down (fast: sessions are ended) and waits for it
// to exit. Its data stays: Start brings it back.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.stop(); err != nil {
		t.Fatalf("pgtest: stop: %v", err)
	}
}

// Start starts a stopped cluster again, on the same socket, and waits
// until it accepts connections.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	if err := c.start(); err != nil {
		t.Fatalf("pgtest: start: %v", err)
	}
}

// Close stops the server and removes its directory.
func (c *Cluster) Close() {
	_ = c.stop()
	_ = os.RemoveAll(c.dir)
}

// newCluster finds the binaries, runs initdb and starts the server.
func newCluster() (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(tempBase(), "stackd-pg-")
	if err != nil {
		return nil, err
	}
	var pw [16]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, bin: bin, cred: cred, password: hex.EncodeToString(pw[:])}
	if err := c.initdb(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := c.start(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// binDir finds a directory with initdb and postgres: STACKD_PGTEST_BINDIR,
// else the newest /usr/lib/postgresql/<version>/bin, else PATH.
func binDir() (string, error) {
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	if d := os.Getenv(EnvBinDir); d != "" {
		if !has(d) {
			return "", fmt.Errorf("%w: %s=%s has no initdb and postgres", errNoPostgres, EnvBinDir, d)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("%w: initdb and postgres are neither in /usr/lib/postgresql/*/bin nor on PATH", errNoPostgres)
}

// version is the major version of a /usr/lib/postgresql/<version>/bin.
func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// credential is whom the server runs as: nil (this process's user)
// unless this process is root, which initdb and postgres refuse.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	name := os.Getenv(EnvUser)
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("%w: running as root, and initdb refuses root; the OS user %q to run it as is missing (%s names another)", errNoPostgres, name, EnvUser)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil || uid == 0 {
		return nil, fmt.Errorf("%w: the OS user %q is not a usable non-root user", errNoPostgres, name)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// tempBase is where cluster directories go: the socket's path must stay
// under the kernel's limit of 107 bytes.
func tempBase() string {
	if d := os.TempDir(); len(d) < 60 {
		return d
	}
	return "/tmp"
}

func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGQUIT}
	return cmd
}

// chown hands path to the cluster's user (when running as root).
func (c *Cluster) chown(path string) error {
	if c.cred == nil {
		return nil
	}
	return os.Chown(path, int(c.cred.Uid), int(c.cred.Gid))
}

func (c *Cluster) initdb() error {
	if err := c.chown(c.dir); err != nil {
		return err
	}
	pwfile := filepath.Join(c.dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(c.password+"\n"), 0o600); err != nil {
		return err
	}
	if err := c.chown(pwfile); err != nil {
		return err
	}
	defer func() { _ = os.Remove(pwfile) }()
	cmd := c.command("initdb", "-D", filepath.Join(c.dir, "data"), "-U", Superuser, "--pwfile="+pwfile,
		"--auth=scram-sha-256", "--no-sync", "--no-locale", "-E", "UTF8")
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	out, err := runWithin(ctx, cmd)
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return nil
}

// runWithin runs cmd, killing it when ctx ends, and returns its output.
func runWithin(ctx context.Context, cmd *exec.Cmd) ([]byte, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	defer stop()
	err := cmd.Wait()
	return []byte(out.String()), err
}

// start runs the server and waits until postmaster.pid says it is ready.
func (c *Cluster) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return errors.New("already running")
	}
	logPath := filepath.Join(c.dir, "server.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer func() { _ = logf.Close() }()
	cmd := c.command("postgres", "-D", filepath.Join(c.dir, "data"), "-k", c.dir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "shared_buffers=32MB", "-c", "max_connections=200")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.cmd, c.done = cmd, done
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if c.ready() {
			return nil
		}
		select {
		case <-done:
			c.cmd, c.done = nil, nil
			return fmt.Errorf("postgres exited during start-up:\n%s", tail(logPath))
		case <-deadline.C:
			_ = cmd.Process.Kill()
			<-done
			c.cmd, c.done = nil, nil
			return fmt.Errorf("postgres not ready after %s:\n%s", readyTimeout, tail(logPath))
		case <-tick.C:
		}
	}
}

// ready reads the status line of postmaster.pid (its 8th line), which the
// server sets to "ready" once it accepts connections.
func (c *Cluster) ready() bool {
	f, err := os.Open(filepath.Join(c.dir, "data", "postmaster.pid"))
	if err != nil {
		return false
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for i := 1; sc.Scan(); i++ {
		if i == 8 {
			return strings.TrimSpace(sc.Text()) == "ready"
		}
	}
	return false
}

// stop sends SIGINT (fast shutdown) and waits for the server to exit.
func (c *Cluster) stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return nil
	}
	cmd, done := c.cmd, c.done
	c.cmd, c.done = nil, nil
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
		return nil
	case <-time.After(readyTimeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("postgres did not shut down within %s", readyTimeout)
	}
}

// tail is the end of the server log, for failure messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

package impl_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// testServer is a stackd App behind httptest with a generated client.
type testServer struct {
	t      *testing.T
	app    *impl.App
	srv    *httptest.Server
	c      *client.ClientWithResponses
	cancel context.CancelFunc
	runCtx context.Context
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
	ch chan struct{} // closed by the next write (wrote)
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
	return s.b.Write(p)
}

// wrote returns a channel closed by the next write: take it, then look at
// String, then wait on it.
func (s *syncBuffer) wrote() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// baseConfig is a loopback, auth-off config serving dir (if not empty).
func baseConfig(t *testing.T, dir string) config.Config {
	return baseConfigB(t, dir)
}

func baseConfigB(t testing.TB, dir string) config.Config {
	cfg := config.Default()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.SyncInterval = 0
	// Webhook runs start at once unless a test is about the debounce
	// window (it sets one, with a fake clock).
	cfg.WebhookDebounce = 0
	if dir != "" {
		cfg.Cwd, cfg.CwdExplicit = dir, true
	} else {
		cfg.Cwd = t.TempDir() // no repository here
	}
	return cfg
}

func startServer(t *testing.T, cfg config.Config, opts impl.Options) *testServer {
	t.Helper()
	s := startServerNoStart(t, cfg, opts)
	s.start(t)
	return s
}

// startServerNoStart serves the API without the background work (clones of
// configured mirrors, loops, watcher) until start is called.
func startServerNoStart(t *testing.T, cfg config.Config, opts impl.Options) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// Tests call sync far more often than a person would: no rate limits
	// unless the test sets them (see TestRateLimits).
	if opts.Rate == (auth.RateLimit{}) {
		opts.Rate = auth.RateLimit{PerSecond: -1}
	}
	if opts.SyncRate == (auth.RateLimit{}) {
		opts.SyncRate = auth.RateLimit{PerSecond: -1}
	}
	if opts.FailRate == (auth.RateLimit{}) {
		opts.FailRate = auth.RateLimit{PerSecond: -1}
	}
	srv := httptest.NewUnstartedServer(nil)
	if cfg.Auth == "oidc" && cfg.BaseURL == "" {
		cfg.BaseURL = "http://" + srv.Listener.Addr().String()
	}
	app, err := impl.New(cfg, log, opts)
	if err != nil {
		srv.Close()
		t.Fatalf("impl.New: %v", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	srv.Config.Handler = app.Handler()
	srv.Start()
	t.Cleanup(func() {
		cancel()
		srv.CloseClientConnections()
		srv.Close()
		app.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	c, err := client.NewClientWithResponses(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{t: t, app: app, srv: srv, c: c, cancel: cancel, logs: logs, runCtx: runCtx}
}

// start launches the background work.
func (s *testServer) start(t *testing.T) {
	t.Helper()
	if err := s.app.Start(s.runCtx); err != nil {
		t.Fatal(err)
	}
}

// do sends a raw request and returns status, headers and body.
func (s *testServer) do(method, path string, body io.Reader, hdr ...string) (int, http.Header, string) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func treeHash(t *testing.T, dir string) map[string]string { return gittest.TreeSnapshot(t, dir) }

func diffTrees(a, b map[string]string) []string { return gittest.TreeChanges(a, b) }

// stackitMeta writes stackit metadata for branch.
func stackitMeta(r *gittest.Repo, branch, parent, parentRev, extra string) {
	body := `{"parentBranchName":"` + parent + `"`
	if parentRev != "" {
		body += `,"parentBranchRevision":"` + parentRev + `"`
	}
	if extra != "" {
		body += "," + extra
	}
	body += "}"
	r.BlobRef("refs/stackit/metadata/"+branch, body)
}

// stackRepo builds trunk main with a 3-branch stackit stack a -> b -> c and
// checks out b.
func stackRepo(t testing.TB) *gittest.Repo {
	r := gittest.New(t)
	r.Commit("initial", map[string]string{"README": "hello\n"})
	r.Branch("a", "main")
	r.Commit("a1", map[string]string{"a.txt": "a\n"})
	r.Branch("b", "a")
	r.Commit("b1", map[string]string{"b.txt": "b\n"})
	r.Commit("b2", map[string]string{"b.txt": "b2\n"})
	r.Branch("c", "b")
	r.Commit("c1", map[string]string{"c.txt": "c\n"})
	stackitMeta(r, "a", "main", r.Rev("main"), `"stackId":"s1","prInfo":{"number":7,"title":"Add a","state":"OPEN","url":"https://github.com/acme/x/pull/7","isDraft":false,"base":"main"}`)
	stackitMeta(r, "b", "a", r.Rev("a"), `"stackId":"s1"`)
	stackitMeta(r, "c", "b", r.Rev("b"), `"stackId":"s1"`)
	r.BlobRef("refs/stackit/stacks/s1", `{"id":"s1","title":"Login flow","description":"three steps"}`)
	r.Git("checkout", "-q", "b")
	return r
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// vv reads a nullable viewVersion; null (no view published yet) is -1, so
// that it never equals a real version.
func vv(v *int64) int64 {
	if v == nil {
		return -1
	}
	return *v
}

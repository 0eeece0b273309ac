package impl_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/deadline/deadlinetest"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// Tests of hostile clients (issue 14): clients that hoard connections or
// database rows, or send values the engines would disagree on.

// waitFor is how long a test waits for something that must happen.
const waitFor = 60 * time.Second

// rawServer is an App behind an httptest server whose listener gives
// connections small send buffers and whose connections are followed
// (deadlinetest), with the handler wrapped by wrap (nil: as it is).
type rawServer struct {
	app   *impl.App
	srv   *httptest.Server
	conns *deadlinetest.Conns
	logs  *syncBuffer
}

func startRawServer(t *testing.T, cfg config.Config, wrap func(http.Handler) http.Handler) *rawServer {
	t.Helper()
	logs := &syncBuffer{}
	app, err := impl.New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), impl.Options{Rate: auth.RateLimit{PerSecond: -1}, SyncRate: auth.RateLimit{PerSecond: -1}})
	if err != nil {
		t.Fatal(err)
	}
	h := app.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = deadlinetest.SmallBuffers(srv.Listener)
	conns := deadlinetest.NewConns()
	srv.Config.ConnState = conns.Hook
	srv.Start()
	runCtx, cancel := context.WithCancel(context.Background())
	if err := app.Start(runCtx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		srv.CloseClientConnections()
		srv.Close()
		app.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return &rawServer{app: app, srv: srv, conns: conns, logs: logs}
}

// largeRepo is a working repository with n stacked branches, each with
// stackit metadata: a view of some hundreds of KiB.
func largeRepo(t *testing.T, n int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "large")
	if err := gittest.BuildStacks(dir, gittest.Shape{Branches: n, MetadataEvery: 1}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestStalledClientIsCut: a client that asks for a large view and never
// reads is cut after --write-stall-timeout: the view handler ends and the
// server closes the connection. A client that reads the same view slowly
// (for longer in total than the budget) gets all of it.
func TestStalledClientIsCut(t *testing.T) {
	cfg := baseConfig(t, largeRepo(t, 1500))
	cfg.WriteStallTimeout = 2 * time.Second
	const view = "/api/v1/repos/local/view"
	ended := make(chan struct{}, 4)
	s := startRawServer(t, cfg, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r)
			if r.URL.Path == view {
				ended <- struct{}{}
			}
		})
	})
	addr := s.srv.Listener.Addr().String()

	// The size of the view, read at full speed.
	resp, err := http.Get(s.srv.URL + view)
	if err != nil {
		t.Fatal(err)
	}
	full, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(full) < 560<<10 { // longer to read slowly than the budget
		t.Fatalf("view: %d, %d bytes, %v (want a large one)", resp.StatusCode, len(full), err)
	}
	<-ended

	stalled, err := deadlinetest.Get(addr, view)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	select {
	case <-ended:
	case <-time.After(waitFor):
		t.Fatal("the view handler still writes to a client that does not read")
	}
	select {
	case <-s.conns.Closed(stalled):
	case <-time.After(waitFor):
		t.Fatal("the server kept the connection of a client that does not read")
	}

	// A slow reader: 4 KiB every 15 ms (about 270 KB/s), so one write
	// of deadline.ChunkSize (256 KiB) waits about 1 s for it (half the
	// budget: a loaded machine's late ticks stay inside it) and the whole
	// view (over 600 KB) takes longer than the budget. The pace is the
	// property under test.
	slow, err := deadlinetest.Get(addr, view)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	resp, err = http.ReadResponse(bufio.NewReaderSize(slow, 4096), nil)
	if err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(15 * time.Millisecond)
	defer tick.Stop()
	var got []byte
	buf := make([]byte, 4096)
	for {
		<-tick.C
		n, err := resp.Body.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("slow reader, after %d of %d bytes: %v", len(got), len(full), err)
		}
	}
	if string(got) != string(full) {
		t.Fatalf("slow reader got %d bytes, want the %d of the view", len(got), len(full))
	}
}

// TestEventStreamOutlivesWriteBudget: an event stream idle for longer
// than --write-stall-timeout stays open and delivers the next events.
func TestEventStreamOutlivesWriteBudget(t *testing.T) {
	cfg := baseConfig(t, stackRepo(t).Dir)
	cfg.WriteStallTimeout = 50 * time.Millisecond
	s := startServer(t, cfg, impl.Options{})
	st := openStream(t, s, "/api/v1/repos/local/events")
	if ev := st.next(t); ev.typ != "connected" {
		t.Fatalf("first event %q", ev.typ)
	}
	<-time.After(4 * cfg.WriteStallTimeout) // idle for longer than the budget
	run := syncOK(t, s, "local")
	st.untilFinished(t, 0, run.Id)
}

// TestIPv6PrefixSharesStreamCap: 32 addresses of one IPv6 /64 (the
// default --ipv6-client-prefix) are one client for the event-stream cap
// (--max-event-streams-per-client 8); another /64 and an IPv4 address are
// clients of their own, and an IPv4-mapped address is its IPv4 address.
func TestIPv6PrefixSharesStreamCap(t *testing.T) {
	cfg := baseConfig(t, stackRepo(t).Dir)
	cfg.TrustedProxies = []string{"127.0.0.1/32"}
	cfg.MaxEventStreamsPerClient = 8
	s := startServer(t, cfg, impl.Options{})
	open := func(from string) int {
		t.Helper()
		c, cancel := context.WithCancel(ctx(t))
		req, _ := http.NewRequestWithContext(c, "GET", s.srv.URL+"/api/v1/repos/local/events", nil)
		req.Header.Set("X-Forwarded-For", from)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); resp.Body.Close() })
		if resp.StatusCode != 200 {
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		return resp.StatusCode
	}
	var codes []int
	for i := range 32 {
		codes = append(codes, open(fmt.Sprintf("2001:db8:1:2:%x::%x", i, i+1)))
	}
	want := slices.Repeat([]int{200}, 8)
	want = append(want, slices.Repeat([]int{429}, 24)...)
	if !slices.Equal(codes, want) {
		t.Fatalf("32 addresses of one /64: %v, want 8 streams then 429", codes)
	}
	if code := open("2001:db8:1:3::1"); code != 200 {
		t.Errorf("another /64: %d", code)
	}
	for i := range 8 {
		if code := open(fmt.Sprintf("::ffff:198.51.100.%d", 1+i%2)); code != 200 {
			t.Fatalf("IPv4 stream %d: %d", i, code)
		}
	}
	// 198.51.100.1 and .2 each hold 4 now, whichever way they were
	// written.
	for range 4 {
		if code := open("198.51.100.1"); code != 200 {
			t.Fatalf("198.51.100.1: %d", code)
		}
	}
	if code := open("::ffff:198.51.100.1"); code != 429 {
		t.Errorf("the ninth stream of 198.51.100.1, IPv4-mapped: %d", code)
	}
}

// TestOnboardingFieldsValidated: trunk and fullName are checked at the
// boundary, alike on both engines: a 400 whose detail names the rule and
// never the value, before anything is cloned or stored. A NUL byte is one
// of them (PostgreSQL cannot store it; SQLite would).
func TestOnboardingFieldsValidated(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			up := newUpstream(t, "acme/checked.git")
			cfg := mirrorConfig(t)
			if engine == "postgres" {
				cfg = pgConfig(t)
			}
			s := startServer(t, cfg, impl.Options{})
			cases := []struct {
				name            string
				trunk, fullName *string
				rule            string
			}{
				{"NUL in trunk", strptr("main\x00"), nil, "/trunk"},
				{"NUL in fullName", nil, strptr("acme/x\x00y"), "/fullName"},
				{"control character in trunk", strptr("ma\nin"), nil, "/trunk"},
				{"trunk with ..", strptr("a..b"), nil, `trunk: not a valid branch name: it contains ".."`},
				{"trunk HEAD", strptr("HEAD"), nil, "trunk: not a valid branch name: it is a name git reserves"},
				{"trunk component .lock", strptr("x/y.lock"), nil, `trunk: not a valid branch name: a path component ends with ".lock"`},
				{"trunk too long", strptr(strings.Repeat("t", 1025)), nil, "/trunk"},
				{"fullName without owner", nil, strptr("checked"), "/fullName"},
				{"fullName ..", nil, strptr("acme/.."), `fullName: not a valid owner/name: the name cannot be "." or ".."`},
				{"fullName with a space", nil, strptr("acme/a b"), "/fullName"},
				{"fullName too long", nil, strptr("acme/" + strings.Repeat("n", 101)), "/fullName"},
			}
			for _, tc := range cases {
				resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: up.url, Trunk: tc.trunk, FullName: tc.fullName})
				if err != nil {
					t.Fatal(err)
				}
				p := resp.ApplicationproblemJSON400
				if resp.StatusCode() != 400 || p == nil || p.Type != "/problems/bad-request" || p.Detail == nil || !strings.Contains(*p.Detail, tc.rule) {
					t.Errorf("%s: %d %s", tc.name, resp.StatusCode(), resp.Body)
					continue
				}
				for _, v := range []*string{tc.trunk, tc.fullName} {
					if v != nil && strings.Contains(*p.Detail, *v) {
						t.Errorf("%s: the detail repeats the value: %s", tc.name, resp.Body)
					}
				}
				t.Logf("%s: %s", tc.name, *p.Detail)
			}
			if exists(t, mirrorDir(cfg, "checked")) {
				t.Fatal("a refused onboarding cloned")
			}
			list, err := s.c.ListReposWithResponse(ctx(t))
			if err != nil || list.JSON200 == nil || len(*list.JSON200) != 0 {
				t.Fatalf("repositories after refusals: %v %s", err, list.Body)
			}
			// Valid values onboard.
			resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: up.url, Trunk: strptr("main"), FullName: strptr("Acme-Corp/checked.v2")})
			if err != nil || resp.JSON201 == nil || resp.JSON201.FullName == nil || *resp.JSON201.FullName != "acme-corp/checked.v2" || resp.JSON201.Trunk != "main" {
				t.Fatalf("valid onboarding: %v %d %s", err, resp.StatusCode(), resp.Body)
			}
		})
	}
}

// TestAuditAggregatesThroughAPI: failed anonymous mutations show in
// GET /api/v1/audit as one entry per minute with their count, the route
// template and the escaped, bounded parameter of the first; an entry of
// its own for each success. The open minute is written at shutdown.
func TestAuditAggregatesThroughAPI(t *testing.T) {
	cfg := baseConfig(t, stackRepo(t).Dir)
	s := startServer(t, cfg, impl.Options{})
	hostile := "nope%00" + strings.Repeat("%E2%80%AE", 100)
	for range 5 {
		if code, _, body := s.do("POST", "/api/v1/repos/"+hostile+"/sync", nil); code != 400 {
			t.Fatalf("hostile sync: %d %s", code, body)
		}
	}
	syncOK(t, s, "local")
	s = restart(t, s, cfg, impl.Options{})
	resp, err := s.c.ListAuditWithResponse(ctx(t), nil)
	if err != nil || resp.JSON200 == nil || len(*resp.JSON200) != 2 {
		t.Fatalf("audit: %v %s", err, resp.Body)
	}
	var agg, one client.AuditEntry
	for _, e := range *resp.JSON200 {
		if e.Requests > 1 {
			agg = e
		} else {
			one = e
		}
	}
	if agg.Requests != 5 || agg.Route == nil || *agg.Route != "/api/v1/repos/{repoID}/sync" || agg.Outcome != "400" ||
		agg.Client == nil || *agg.Client != "127.0.0.1" || agg.LastAt.Before(agg.At) {
		t.Errorf("aggregate: %+v", agg)
	}
	if agg.Repo == nil || len(*agg.Repo) > 128 || !strings.HasPrefix(*agg.Repo, `nope\x00\u202e`) || !strings.HasSuffix(*agg.Repo, "…") {
		t.Errorf("aggregate's parameter: %v", agg.Repo)
	}
	if one.Requests != 1 || one.Action != "syncRepo" || one.Outcome != "200" || one.Repo == nil || *one.Repo != "local" || !one.LastAt.Equal(one.At) {
		t.Errorf("success: %+v", one)
	}
}

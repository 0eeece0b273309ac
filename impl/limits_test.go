package impl_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/refresh"
)

// TestThirtyConcurrentLocalSyncs: with the default limits, thirty syncs at
// once all answer 200. They coalesce into two runs (the one that started
// first and the follow-up the others join), and joining costs no sync
// token: with a sync bucket of two, the next sync that creates a run is
// the one refused.
func TestThirtyConcurrentLocalSyncs(t *testing.T) {
	r := stackRepo(t)
	hold := make(chan struct{})
	var armed atomic.Bool
	before := func(ctx context.Context, _ string, _ refresh.Mode) error {
		if armed.Load() {
			select {
			case <-hold:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	enqueued := make(chan string, 64)
	o := productionLimits(impl.Options{BeforeRefresh: before, Enqueued: func(_, run string) {
		if armed.Load() {
			enqueued <- run
		}
	}})
	o.SyncRate = auth.RateLimit{PerSecond: 0.001, Burst: 2}
	s := startServer(t, baseConfig(t, r.Dir), o)
	armed.Store(true)

	type answer struct {
		code int
		body string
	}
	answers := make(chan answer, 30)
	for range 30 {
		go func() {
			code, _, body := s.do("POST", "/api/v1/repos/local/sync", nil)
			answers <- answer{code, body}
		}()
	}
	for range 30 { // every sync has joined or created its run
		<-enqueued
	}
	close(hold)
	runs := map[string]bool{}
	for range 30 {
		a := <-answers
		if a.code != 200 {
			t.Fatalf("a concurrent sync answered %d: %s", a.code, a.body)
		}
		id := a.body[strings.Index(a.body, `"id":"`)+6:]
		runs[id[:strings.IndexByte(id, '"')]] = true
	}
	if len(runs) != 2 {
		t.Fatalf("thirty syncs ran in %d runs, want 2", len(runs))
	}
	armed.Store(false)
	code, hdr, body := s.do("POST", "/api/v1/repos/local/sync", nil)
	if code != 429 || hdr.Get("Retry-After") == "" || problemType(t, body) != "/problems/too-many-requests" {
		t.Fatalf("a sync creating a third run: %d %s", code, body)
	}
}

// TestHealthAndSpecAreNotLimited: probes, the spec and Swagger UI answer
// however often they are asked, while the API bucket is spent.
func TestHealthAndSpecAreNotLimited(t *testing.T) {
	s := startServer(t, baseConfig(t, stackRepo(t).Dir), impl.Options{Rate: auth.RateLimit{PerSecond: 0.001, Burst: 1}})
	if code, _, _ := s.do("GET", "/api/v1/repos", nil); code != 200 {
		t.Fatalf("first request: %d", code)
	}
	if code, _, _ := s.do("GET", "/api/v1/repos", nil); code != 429 {
		t.Fatalf("the API bucket is not spent: %d", code)
	}
	for range 25 {
		for _, p := range []string{"/healthz", "/readyz", "/openapi.yaml", "/openapi.json", "/docs/"} {
			if code, _, body := s.do("GET", p, nil); code != 200 {
				t.Fatalf("%s: %d %s", p, code, body)
			}
		}
	}
}

// TestBadTokensDoNotLockOutAUser: bad bearer tokens from an address spend
// that address's failed-authentication bucket only; a signed-in user at the
// same address syncs and reads, and anonymous callers there get 401, not
// 429.
func TestBadTokensDoNotLockOutAUser(t *testing.T) {
	idp := startIDP(t)
	cfg := oidcConfig(t, idp, stackRepo(t).Dir)
	o := productionLimits(impl.Options{})
	o.FailRate = auth.RateLimit{PerSecond: 0.001, Burst: 2}
	s := startServer(t, cfg, o)
	for i, want := range []int{401, 401, 429, 429, 429} {
		code, hdr, _ := s.do("POST", "/api/v1/repos/local/sync", nil, "Authorization", "Bearer not-a-token")
		if code != want || code == 429 && hdr.Get("Retry-After") == "" {
			t.Fatalf("bad token %d: %d, want %d", i, code, want)
		}
	}
	user := "Bearer " + idToken(t, idp, nil)
	if code, _, body := s.do("POST", "/api/v1/repos/local/sync", nil, "Authorization", user); code != 200 {
		t.Fatalf("the user's sync: %d %s", code, body)
	}
	if code, _, body := s.do("GET", "/api/v1/repos/local/view", nil, "Authorization", user); code != 200 {
		t.Fatalf("the user's read: %d %s", code, body)
	}
	if code, _, _ := s.do("GET", "/api/v1/repos/local/view", nil); code != 401 {
		t.Fatalf("anonymous at that address: %d, want 401", code)
	}
}

package impl_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/refresh/refreshtest"
)

// productionLimits are the default rate limits (the harness turns them off).
func productionLimits(o impl.Options) impl.Options {
	o.Rate, o.SyncRate, o.FailRate = auth.DefaultRate, auth.DefaultSyncRate, auth.DefaultFailRate
	return o
}

// TestSignedPushBurst: eight signed push deliveries from one address, with
// the default rate limits, are all accepted (202, or 204 for a repeated
// delivery id), name one queued run, and are served by one fetch once the
// quiet window has passed.
func TestSignedPushBurst(t *testing.T) {
	up := newUpstream(t, "acme/burst.git")
	cfg := mirrorConfig(t)
	cfg.WebhookSecret = "s3cret"
	cfg.WebhookDebounce, cfg.WebhookMaxDelay = 2*time.Second, 10*time.Second
	clk := refreshtest.NewClock()
	cf := &countingFetch{}
	s := startServer(t, cfg, productionLimits(impl.Options{BeforeRefresh: cf.fetch, DebounceClock: clk}))
	onboard(t, s, up.url)
	cf.n.Store(0)
	up.work.Commit("pushed", map[string]string{"p": "p\n"})
	up.push("main")

	body := `{"ref":"refs/heads/main","repository":{"full_name":"acme/burst"}}`
	ids := map[string]int{}
	for i, delivery := range []string{"d0", "d1", "d2", "d3", "d3", "d4", "d5", "d6"} {
		code, _, text := s.do("POST", "/api/v1/webhooks/github", strings.NewReader(body),
			"Content-Type", "application/json", "X-GitHub-Event", "push", "X-GitHub-Delivery", delivery,
			"X-Hub-Signature-256", sign("s3cret", body))
		switch {
		case i == 4 && code == 204: // the repeated delivery
		case i != 4 && code == 202:
			id := text[strings.Index(text, `"syncID":"`)+10:]
			ids[id[:strings.IndexByte(id, '"')]]++
		default:
			t.Fatalf("delivery %d (%s): %d %s", i, delivery, code, text)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("the burst named runs %v, want one", ids)
	}
	var id string
	for id = range ids {
	}
	<-clk.Armed // the window of the first push
	code, _, text := s.do("GET", "/api/v1/repos/burst/syncs/"+id, nil)
	if code != 200 || !strings.Contains(text, `"state":"queued"`) || cf.n.Load() != 0 {
		t.Fatalf("before the window ended: %d %s, %d fetches", code, text, cf.n.Load())
	}
	clk.Advance(2 * time.Second)
	rf, _ := s.app.Refresh().Get("burst")
	res, err := rf.Wait(ctx(t), id)
	if err != nil || res.State != refresh.Succeeded || res.Trigger != refresh.Webhook || len(res.Changes) != 1 || res.Changes[0].Ref != "refs/heads/main" {
		t.Fatalf("the run named by the 202s: %+v %v", res, err)
	}
	if n := cf.n.Load(); n != 1 {
		t.Fatalf("%d fetches for the burst, want 1", n)
	}
}

// TestBadWebhookSignaturesAreLimitedPerAddress: unsigned and badly signed
// requests spend the address's failed-authentication bucket; verified
// deliveries from that address still pass.
func TestBadWebhookSignaturesAreLimitedPerAddress(t *testing.T) {
	cfg := baseConfig(t, stackRepo(t).Dir)
	cfg.WebhookSecret = "k"
	s := startServer(t, cfg, impl.Options{FailRate: auth.RateLimit{PerSecond: 0.001, Burst: 2}})
	ping := `{"zen":"hi"}`
	post := func(sig string) (int, http.Header) {
		hdr := []string{"Content-Type", "application/json", "X-GitHub-Event", "ping"}
		if sig != "" {
			hdr = append(hdr, "X-Hub-Signature-256", sig)
		}
		code, h, _ := s.do("POST", "/api/v1/webhooks/github", strings.NewReader(ping), hdr...)
		return code, h
	}
	for i, st := range []struct {
		sig  string
		want int
	}{
		{sign("wrong", ping), 401},
		{"", 401},
		{sign("wrong", ping), 429},
		{"", 429},
		{"sha256=zz", 429},
		{sign("k", ping), 204},
		{sign("k", ping), 204},
	} {
		code, h := post(st.sig)
		if code != st.want {
			t.Fatalf("request %d: %d, want %d", i, code, st.want)
		}
		if code == 429 && h.Get("Retry-After") == "" {
			t.Fatalf("request %d: 429 without Retry-After", i)
		}
	}
}

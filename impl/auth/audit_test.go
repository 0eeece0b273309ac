package auth

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stackd/stackd/impl/store"
)

func TestAuditText(t *testing.T) {
	tests := []struct {
		name, in string
		limit    int
		want     string
	}{
		{"plain", "team-one.x_y", 128, "team-one.x_y"},
		{"empty", "", 128, ""},
		{"slash and unicode letters stay", "team/ünïcode", 128, "team/ünïcode"},
		{"NUL", "a\x00b", 128, `a\x00b`},
		{"controls", "a\nb\tc\x7f", 128, `a\nb\tc\x7f`},
		{"backslash is doubled", `a\x00`, 128, `a\\x00`},
		{"format character", "a\u202eb", 128, `a\u202eb`},
		{"invalid UTF-8", "a\xffb", 128, `a\xffb`},
		{"exactly the limit", strings.Repeat("x", 8), 8, strings.Repeat("x", 8)},
		{"cut", strings.Repeat("x", 9), 8, "xxxxx…"},
		{"cut before an escape", "xxxx\x00\x00", 8, "xxxx…"},
		{"never inside a character", "xxxxé" + strings.Repeat("y", 10), 8, "xxxx…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := auditText(tt.in, tt.limit)
			if got != tt.want {
				t.Errorf("auditText(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
			}
			if len(got) > tt.limit || !utf8.ValidString(got) {
				t.Errorf("%q: %d bytes, valid UTF-8 %v", got, len(got), utf8.ValidString(got))
			}
		})
	}
	// Whatever comes in, what goes out is short and printable.
	long := strings.Repeat("\x00\xff\u202e", 20000)
	if got := auditText(long, MaxAuditParam); len(got) > MaxAuditParam || strings.ContainsAny(got, "\x00\u202e") || !utf8.ValidString(got) {
		t.Errorf("long hostile input: %q", got)
	}
}

func TestAddressGroup(t *testing.T) {
	tests := []struct {
		ip   string
		bits int
		want string
	}{
		{"203.0.113.5", 64, "203.0.113.5"},
		{"::ffff:203.0.113.5", 64, "203.0.113.5"}, // IPv4-mapped is IPv4
		{"::ffff:203.0.113.6", 64, "203.0.113.6"}, // ... and not grouped with its neighbours
		{"2001:db8:1:2::7", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:3::7", 64, "2001:db8:1:3::/64"},
		{"2001:db8:1:2::7", 48, "2001:db8:1::/48"},
		{"2001:db8:1:2::7", 128, "2001:db8:1:2::7"},
		{"fe80::1%eth0", 64, "fe80::/64"}, // zones are dropped
		{"::1", 64, "::/64"},
		{"pipe", 64, "pipe"}, // not an address: as it is
		{"", 64, ""},
	}
	for _, tt := range tests {
		if got := AddressGroup(tt.ip, tt.bits); got != tt.want {
			t.Errorf("AddressGroup(%q, %d) = %q, want %q", tt.ip, tt.bits, got, tt.want)
		}
	}
	if _, err := New(context.Background(), Config{IPv6ClientPrefix: 129}, nil, nil, nil); err == nil {
		t.Error("a /129 prefix was accepted")
	}
}

// TestIPv6ClientsShareBuckets: the anonymous addresses of one IPv6 /64
// (the default) share one API bucket and one failed-authentication
// bucket; another /64 and IPv4 addresses have their own; an IPv4-mapped
// address is its IPv4 address. A signed-in user keeps their own bucket.
func TestIPv6ClientsShareBuckets(t *testing.T) {
	trust := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	clk := newClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	e := newEnv(t, envOpts{mode: ModeOIDC, clk: clk, cfg: func(c *Config) {
		c.Rate = RateLimit{PerSecond: 0.001, Burst: 2}
		c.FailRate = RateLimit{PerSecond: 0.001, Burst: 1}
		c.PublicReads = true
		c.TrustedProxies = trust
	}})
	u := bearer(e.token(t, jwt.MapClaims{"sub": "u"}))
	bad := bearer("not-a-token")
	runSteps(t, e, clk, []rlStep{
		{name: "one address of the /64", path: "/api/v1/repos", from: "2001:db8:1:2::1", want: 200, key: "ip:2001:db8:1:2::/64"},
		{name: "another address of it", path: "/api/v1/repos", from: "2001:db8:1:2:aaaa::9", want: 200, key: "ip:2001:db8:1:2::/64"},
		{name: "a third: the bucket is the /64's", path: "/api/v1/repos", from: "2001:db8:1:2:ffff::3", want: 429, retryAfter: "1000"},
		{name: "the next /64", path: "/api/v1/repos", from: "2001:db8:1:3::1", want: 200, key: "ip:2001:db8:1:3::/64"},
		{name: "a user in the spent /64", path: "/api/v1/repos", from: "2001:db8:1:2::1", header: u, want: 200, key: "user:u"},
		{name: "an IPv4 address", path: "/api/v1/repos", from: "198.51.100.1", want: 200, key: "ip:198.51.100.1"},
		{name: "the same, IPv4-mapped", path: "/api/v1/repos", from: "::ffff:198.51.100.1", want: 200, key: "ip:198.51.100.1"},
		{name: "spent, whichever way it is written", path: "/api/v1/repos", from: "198.51.100.1", want: 429, retryAfter: "1000"},
		{name: "its IPv4 neighbour", path: "/api/v1/repos", from: "::ffff:198.51.100.2", want: 200, key: "ip:198.51.100.2"},
		{name: "a bad token in a /64", path: "/api/v1/repos", from: "2001:db8:9:9::1", header: bad, want: 401},
		{name: "the failures are the /64's", path: "/api/v1/repos", from: "2001:db8:9:9::2", header: bad, want: 429, retryAfter: "1000"},
	})

	// A /128 prefix keys every address apart.
	e = newEnv(t, envOpts{mode: ModeNone, clk: clk, cfg: func(c *Config) {
		c.Rate = RateLimit{PerSecond: 0.001, Burst: 1}
		c.TrustedProxies = trust
		c.IPv6ClientPrefix = 128
	}})
	runSteps(t, e, clk, []rlStep{
		{name: "one address", path: "/api/v1/repos", from: "2001:db8:1:2::1", want: 200, key: "ip:2001:db8:1:2::1"},
		{name: "its neighbour", path: "/api/v1/repos", from: "2001:db8:1:2::2", want: 200, key: "ip:2001:db8:1:2::2"},
		{name: "the first again", path: "/api/v1/repos", from: "2001:db8:1:2::1", want: 429, retryAfter: "1000"},
	})
}

// auditRows reads the whole audit log, newest first.
func auditRows(t *testing.T, e *env) []store.AuditEntry {
	t.Helper()
	log, err := e.st.AuditLog(context.Background(), 100000)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// TestAnonymousFailuresAggregated: on a private server, failed anonymous
// mutations are counted per (address group, operation, route, outcome)
// and minute, one entry each, whatever the path carries: 300 requests
// from 300 addresses of one /64 with 8 KiB hostile repository ids add one
// entry, with a bounded, escaped parameter and the route template.
func TestAnonymousFailuresAggregated(t *testing.T) {
	clk := newClock(time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC))
	e := newEnv(t, envOpts{mode: ModeOIDC, clk: clk, cfg: func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}})
	first := clk.Now()
	for i := range 300 {
		id := url.PathEscape(fmt.Sprintf("\x00%d\u202e", i) + strings.Repeat("x\n", 4096))
		r := e.do(t, call{method: http.MethodPost, path: "/api/v1/repos/" + id + "/sync",
			header: map[string]string{"X-Forwarded-For": fmt.Sprintf("2001:db8:1:2::%x", i+1)}})
		if r.status != http.StatusUnauthorized {
			t.Fatalf("request %d: %d", i, r.status)
		}
		if i == 149 {
			clk.Advance(30 * time.Second) // still the same minute
		}
	}
	last := clk.Now()
	// Two IPv4 clients, one of them twice, and a signed-in user (whose
	// entry is written at once).
	for _, from := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.1"} {
		e.do(t, call{method: http.MethodPost, path: "/api/v1/repos", header: map[string]string{"X-Forwarded-For": from}})
	}
	e.do(t, call{method: http.MethodDelete, path: "/api/v1/repos/r", header: bearer(e.token(t, nil))})
	if got := auditRows(t, e); len(got) != 1 || got[0].Action != "deleteRepo" || got[0].Requests != 1 {
		t.Fatalf("before the minute is over: %+v", got)
	}
	// The minute is over: the next failure writes the aggregates of the
	// last one (in the background; FlushAudit waits for it).
	clk.Advance(time.Minute)
	e.do(t, call{method: http.MethodPost, path: "/api/v1/repos/next/sync", header: map[string]string{"X-Forwarded-For": "2001:db8:1:2::1"}})
	e.auth.FlushAudit(false)
	got := auditRows(t, e)
	if len(got) != 4 {
		t.Fatalf("%d entries, want 4 (three aggregates, one user's): %+v", len(got), got)
	}
	var v6 store.AuditEntry
	byClient := map[string]store.AuditEntry{}
	for _, g := range got {
		byClient[g.Client] = g
		if g.Client == "2001:db8:1:2::/64" {
			v6 = g
		}
	}
	want := store.AuditEntry{ID: v6.ID, At: first, LastAt: last, Actor: "anonymous", Method: "anonymous", Action: "syncRepo",
		Route: "/api/v1/repos/{repoID}/sync", Repo: v6.Repo, Outcome: "401 unauthorized", Client: "2001:db8:1:2::/64", Requests: 300}
	if v6 != want {
		t.Errorf("IPv6 aggregate:\n got %+v\nwant %+v", v6, want)
	}
	if !strings.HasPrefix(v6.Repo, `\x000\u202ex\nx\n`) || len(v6.Repo) > MaxAuditParam || !strings.HasSuffix(v6.Repo, "…") {
		t.Errorf("stored parameter %q (%d bytes)", v6.Repo, len(v6.Repo))
	}
	if a := byClient["198.51.100.1"]; a.Requests != 2 || a.Action != "createRepo" || a.Route != "/api/v1/repos" {
		t.Errorf("IPv4 aggregate: %+v", a)
	}
	if a := byClient["198.51.100.2"]; a.Requests != 1 {
		t.Errorf("IPv4 aggregate: %+v", a)
	}
	if n := strings.Count(e.logs.String(), "msg=audit"); n != 4 {
		t.Errorf("%d audit lines in the server log, want one per entry", n)
	}
	// Shutdown writes the open minute.
	e.auth.FlushAudit(true)
	if got := auditRows(t, e); len(got) != 5 || got[0].Repo != "next" || got[0].Requests != 1 {
		t.Errorf("after shutdown: %+v", got[0])
	}
}

// TestAggregatesAreBounded: past maxAggregates address groups in one
// minute, the rest are counted together under the client "*".
func TestAggregatesAreBounded(t *testing.T) {
	e := newEnv(t, envOpts{mode: ModeOIDC})
	for i := range maxAggregates + 6 {
		e.auth.aggregate(store.AuditEntry{At: e.clk.Now(), Actor: "anonymous", Method: "anonymous", Action: "syncRepo",
			Route: "/api/v1/repos/{repoID}/sync", Repo: "r", Outcome: "401 unauthorized",
			Client: fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&0xff, i&0xff), Requests: 1})
	}
	e.auth.FlushAudit(true)
	got := auditRows(t, e)
	if len(got) != maxAggregates+1 {
		t.Fatalf("%d entries, want %d", len(got), maxAggregates+1)
	}
	i := slices.IndexFunc(got, func(a store.AuditEntry) bool { return a.Client == overflowClient })
	if i < 0 || got[i].Requests != 6 || got[i].Repo != "" {
		t.Errorf("overflow aggregate: %+v", got)
	}
}

// TestAuditRetention: PruneAudit keeps entries younger than AuditMaxAge
// and at most AuditMaxEntries of them; the Sweeper prunes when it starts
// and on each tick; and every auditPruneEvery entries written start a
// prune in the background.
func TestAuditRetention(t *testing.T) {
	ctx := context.Background()
	clk := newClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	e := newEnv(t, envOpts{mode: ModeNone, clk: clk, cfg: func(c *Config) {
		c.AuditMaxAge = time.Hour
		c.AuditMaxEntries = 10
	}})
	write := func(n int, at time.Time) {
		for i := range n {
			e.auth.writeAudit(ctx, store.AuditEntry{At: at.Add(time.Duration(i)), Action: "syncRepo", Actor: "a"})
		}
	}
	write(5, clk.Now().Add(-2*time.Hour)) // too old
	write(15, clk.Now().Add(-time.Minute))
	tick := make(chan time.Time)
	done := make(chan struct{})
	sctx, cancel := context.WithCancel(ctx)
	go func() { e.auth.Sweeper(sctx, tick); close(done) }()
	tick <- time.Time{} // accepted once the first prune (at start) is over
	got := auditRows(t, e)
	if len(got) != 10 || got[9].At != clk.Now().Add(-time.Minute+5) {
		t.Fatalf("after the first prune: %d entries, oldest %v", len(got), got[len(got)-1].At)
	}
	clk.Advance(time.Hour)
	tick <- time.Time{}
	tick <- time.Time{} // the previous tick's prune is over
	if got := auditRows(t, e); len(got) != 0 {
		t.Fatalf("an hour later: %d entries", len(got))
	}
	cancel()
	<-done

	// The count limit also holds between two sweeps: every
	// auditPruneEvery entries written prune the log.
	write(auditPruneEvery-int(e.auth.audited.Load()%auditPruneEvery), clk.Now())
	e.auth.FlushAudit(false) // waits for the background prune
	if got := auditRows(t, e); len(got) != 10 {
		t.Errorf("after %d writes: %d entries, want 10", auditPruneEvery, len(got))
	}

	// Negative limits keep everything.
	e = newEnv(t, envOpts{mode: ModeNone, clk: clk, cfg: func(c *Config) {
		c.AuditMaxAge = -1
		c.AuditMaxEntries = -1
	}})
	write(12, clk.Now().Add(-1000*time.Hour))
	e.auth.PruneAudit(ctx)
	if got := auditRows(t, e); len(got) != 12 {
		t.Errorf("without limits: %d entries left", len(got))
	}
}

// TestAuditFlusher: a quiet minute is written by the flusher's tick, not
// only by the next failed request.
func TestAuditFlusher(t *testing.T) {
	e := newEnv(t, envOpts{mode: ModeOIDC})
	e.do(t, call{method: http.MethodPost, path: "/api/v1/repos/r/sync"})
	tick := make(chan time.Time)
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { e.auth.AuditFlusher(ctx, tick); close(done) }()
	tick <- time.Time{}
	tick <- time.Time{} // the first tick's flush is over
	if got := auditRows(t, e); len(got) != 0 {
		t.Fatalf("written before its minute was over: %+v", got)
	}
	e.clk.Advance(time.Minute)
	tick <- time.Time{}
	tick <- time.Time{}
	if got := auditRows(t, e); len(got) != 1 || got[0].Outcome != "401 unauthorized" || got[0].Requests != 1 {
		t.Fatalf("after the minute: %+v", got)
	}
	cancel()
	<-done
}

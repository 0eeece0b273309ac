package impl_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/config"
)

// Per-user visibility (README, Access): a repository onboarded through the
// API with auth on is its owner's and the admins'; everybody else gets, on
// every route of it, exactly the answer of a repository that does not
// exist. The operator's repositories are everybody's.

// visUser is a caller of the visibility matrix.
type visUser struct {
	name  string
	token string // bearer ID token; "" anonymous
	// owner: onboarded the repositories; admin: one of --admins. Both
	// apply only where the server has users (auth oidc).
	owner, admin bool
}

// visPosture is a way to run the server over the same data directory.
type visPosture struct {
	name string
	cfg  config.Config
	// users: auth oidc (bearer tokens name a principal); else every
	// caller is anonymous.
	users bool
	// perUser: visibility applies (all but the local posture).
	perUser bool
	// anonReads: anonymous callers may read; readOnly: every mutation
	// is refused (403).
	anonReads, readOnly bool
}

// visRoute is a route of a repository, called through the generated
// client.
type visRoute struct {
	name     string
	mutating bool
	// ok is the status a caller who sees the repository gets (0: the
	// call is only made for callers who do not: a removal).
	ok   int
	call func(ctx context.Context, c client.ClientInterface, id string, ed client.RequestEditorFn) (*http.Response, error)
}

// visAnswer is a response, its body read unless it is an event stream.
type visAnswer struct {
	status int
	header http.Header
	body   string
}

var (
	problemStamps = regexp.MustCompile(`"(instance|requestId)":"[^"]*",?`)
	idWord        = func(id string) *regexp.Regexp { return regexp.MustCompile(`\b` + regexp.QuoteMeta(id) + `\b`) }
)

// normalized is the answer with what differs between any two requests
// left out (the Date and X-Request-ID headers, the problem's instance and
// requestId) and the repository id in the path replaced by a mark, so
// that the answers for two ids compare byte for byte.
func (a visAnswer) normalized(id string) string {
	h := a.header.Clone()
	h.Del("Date")
	h.Del("X-Request-ID")
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", a.status)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(h[k], ", "))
	}
	b.WriteString("\n")
	b.WriteString(problemStamps.ReplaceAllString(a.body, ""))
	return idWord(id).ReplaceAllString(b.String(), "{repoID}")
}

func bearerEditor(token string) client.RequestEditorFn {
	return func(_ context.Context, r *http.Request) error {
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		return nil
	}
}

// visCall makes one call and reads its answer; an event stream's body is
// not read (the stream is closed once its headers arrived).
func visCall(t *testing.T, s *testServer, r visRoute, id, token string) visAnswer {
	t.Helper()
	cctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	resp, err := r.call(cctx, s.c.ClientInterface, id, bearerEditor(token))
	if err != nil {
		t.Fatalf("%s %s: %v", r.name, id, err)
	}
	defer resp.Body.Close()
	a := visAnswer{status: resp.StatusCode, header: resp.Header}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: %v", r.name, id, err)
		}
		a.body = string(b)
	}
	return a
}

// visRoutes are every route of a repository. syncID names a sync of the
// owner's repository (the ghost gets the same one).
func visRoutes(syncID string) []visRoute {
	noWait := false
	return []visRoute{
		{"getRepo", false, 200, func(ctx context.Context, c client.ClientInterface, id string, ed client.RequestEditorFn) (*http.Response, error) {
			return c.GetRepo(ctx, id, ed)
		}},
		{"getView", false, 200, func(ctx context.Context, c client.ClientInterface, id string, ed client.RequestEditorFn) (*http.Response, error) {
			return c.GetView(ctx, id, nil, ed)
		}},
		{"listStacks", false, 200, func(ctx context.Context, c client.ClientInterface, id string, ed client.RequestEditorFn) (*http.Response, error) {
			return c.ListStacks(ctx, id, nil, ed)
		}},
		{"getStack", false, 200, func(ctx context.Context, c client.ClientInterface, id string, ed client.RequestEditorFn) (*http.Response, error) {
			return c.GetStack(ctx, id, "a", nil, ed)
		}},
		{"listBranches", false, 200, func(ctx context.Context, c client.ClientInterface, id string, ed client.RequestEditorFn) (*http.Response, error) {
			return c.ListBranches(ctx, id, nil, ed)
		}},
		{"getBranch", false, 200, func(ctx context.Context, c client.ClientInterface, id string, ed client.RequestEditorFn) (*http.Response, error) {
			return c.GetBranch(ctx, id, "b", nil, ed)
		}},
		{"getBranchDiff", false, 200, func(ctx context.Context, c client.ClientInterface, id string, ed client.RequestEditorFn) (*http.Response, error) {
			return c.GetBranchDiff(ctx, id, "b", nil, ed)
		}},
		{"listSyncs", false, 200, func(ctx context.Context, c client.ClientInterface, id string, ed client.RequestEditorFn) (*http.Response, error) {
			return c.ListSyncs(ctx, id, nil, ed)
		}},
		{"getSync", false, 200, func(ctx context.Context, c client.ClientInterface, id string, ed client.RequestEditorFn) (*http.Response, error) {
			return c.GetSync(ctx, id, syncID, ed)
		}},
		{"streamEvents", false, 200, func(ctx context.Context, c client.ClientInterface, id string, ed client.RequestEditorFn) (*http.Response, error) {
			return c.StreamEvents(ctx, id, nil, ed)
		}},
		{"syncRepo", true, 202, func(ctx context.Context, c client.ClientInterface, id string, ed client.RequestEditorFn) (*http.Response, error) {
			return c.SyncRepo(ctx, id, &client.SyncRepoParams{Wait: &noWait}, ed)
		}},
		{"deleteRepo", true, 0, func(ctx context.Context, c client.ClientInterface, id string, ed client.RequestEditorFn) (*http.Response, error) {
			return c.DeleteRepo(ctx, id, ed)
		}},
	}
}

// gateAnswer is the status the gate refuses r with for u in p (0: it
// lets the call through to the handler).
func (p visPosture) gateAnswer(u visUser, r visRoute) int {
	switch {
	case p.readOnly && r.mutating:
		return http.StatusForbidden
	case p.users && u.token == "" && (!p.anonReads || r.mutating):
		return http.StatusUnauthorized
	}
	return 0
}

// sees reports whether u sees the owner's repositories in p.
func (p visPosture) sees(u visUser) bool {
	return !p.perUser || p.users && (u.owner || u.admin)
}

// TestVisibilityMatrix runs every caller (the owner, other users, an admin
// by e-mail, an admin by group, anonymous) against every route of a
// repository onboarded through the API, in every posture, over one data
// directory: the server restarts between postures, so the owner must
// survive restarts (SQLite; see TestRepoOwnerSurvivesRestartPostgres).
// Whoever may not see the repository gets, byte for byte (but for the
// request's id, date and the repository id), the answer of an id that was
// never onboarded; lists hold only what the caller sees; addedBy is shown
// to the owner and admins only. In the local posture (auth off on
// loopback) there are no users and everybody sees everything.
func TestVisibilityMatrix(t *testing.T) {
	idp := startIDP(t)
	token := func(sub, email string, verified bool, groups ...string) string {
		over := jwt.MapClaims{"sub": sub, "email": email, "email_verified": verified}
		if len(groups) > 0 {
			over["groups"] = groups
		}
		return idToken(t, idp, over)
	}
	users := []visUser{
		{name: "owner", token: token("ann-sub", "ann@example.com", true), owner: true},
		{name: "other user", token: token("bob-sub", "bob@example.com", true)},
		{name: "unverified admin e-mail", token: token("mallory-sub", "root@example.com", false)},
		{name: "owner's e-mail, other subject", token: token("eve-sub", "ann@example.com", true)},
		{name: "admin by e-mail", token: token("root-sub", "root@example.com", true), admin: true},
		{name: "admin by group", token: token("carol-sub", "carol@example.com", true, "platform"), admin: true},
		{name: "anonymous"},
	}
	owner, adminByEmail, adminByGroup := users[0], users[4], users[5]

	local := stackRepo(t)
	const (
		ownedID = "annrepo"
		ghostID = "nothere" // never onboarded; as long as ownedID
	)
	ups := map[string]*upstream{}
	for _, id := range []string{ownedID, "annrep2", "annrep3"} {
		ups[id] = newUpstream(t, "acme/"+id+".git")
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	base := func() config.Config {
		cfg := baseConfig(t, local.Dir)
		cfg.DataDir = dataDir
		cfg.AllowPrivateRemotes = true
		cfg.WebhookSecret = "s3cret"
		return cfg
	}
	oidc := func() config.Config {
		cfg := base()
		cfg.Auth = "oidc"
		cfg.OIDCIssuer, cfg.OIDCClientID, cfg.OIDCClientSecret = idp.Issuer(), idp.ClientID, idp.ClientSecret
		cfg.AllowAnyUser = true
		cfg.Admins = []string{"root@example.com", "group:platform"}
		return cfg
	}
	private := oidc()
	publicReads := oidc()
	publicReads.PublicReads = true
	oidcRO := oidc()
	oidcRO.ReadOnly = true
	publicRO := base()
	publicRO.Addr, publicRO.ReadOnly = "0.0.0.0:8080", true
	postures := []visPosture{
		{name: "oidc private", cfg: private, users: true, perUser: true},
		{name: "oidc public reads", cfg: publicReads, users: true, perUser: true, anonReads: true},
		{name: "oidc read-only", cfg: oidcRO, users: true, perUser: true, anonReads: true, readOnly: true},
		{name: "public read-only, auth off", cfg: publicRO, perUser: true, anonReads: true, readOnly: true},
		{name: "local, auth off", cfg: base(), anonReads: true},
	}

	for i, p := range postures {
		t.Run(p.name, func(t *testing.T) {
			s := startServer(t, p.cfg, impl.Options{})
			if i == 0 {
				// Onboarded by the owner; then restored in every later
				// posture from the store.
				for _, id := range []string{ownedID, "annrep2", "annrep3"} {
					resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: ups[id].url, Id: &id}, bearerEditor(owner.token))
					if err != nil || resp.JSON201 == nil {
						t.Fatalf("onboard %s: %v %s", id, err, resp.Body)
					}
					if a := resp.JSON201.AddedBy; a == nil || a.Subject != "ann-sub" || a.Email == nil || *a.Email != "ann@example.com" {
						t.Fatalf("onboarded %s: addedBy %+v", id, a)
					}
				}
			}
			rf := idle(t, s, ownedID)
			h := rf.History()
			if len(h) == 0 {
				t.Fatal("no sync of the owned repository")
			}
			routes := visRoutes(h[0].ID)
			for _, u := range users {
				t.Run(u.name, func(t *testing.T) {
					checkVisibleList(t, s, p, u)
					if p.users && u.token != "" {
						me, err := s.c.GetMeWithResponse(ctx(t), bearerEditor(u.token))
						if err != nil || me.JSON200 == nil || me.JSON200.Admin == nil || *me.JSON200.Admin != u.admin {
							t.Errorf("me: %v %s, want admin %v", err, me.Body, u.admin)
						}
					}
					for _, r := range routes {
						gate, sees := p.gateAnswer(u, r), p.sees(u)
						if r.ok == 0 && gate == 0 && sees {
							continue // the removal itself: see below
						}
						got := visCall(t, s, r, ownedID, u.token)
						ghost := visCall(t, s, r, ghostID, u.token)
						switch {
						case gate != 0 && got.status != gate:
							t.Errorf("%s: %d, want the gate's %d\n%s", r.name, got.status, gate, got.body)
						case gate == 0 && sees && got.status != r.ok:
							t.Errorf("%s: %d, want %d (the caller sees the repository)\n%s", r.name, got.status, r.ok, got.body)
						case gate == 0 && !sees && (got.status != 404 || problemType(t, got.body) != "/problems/not-found"):
							t.Errorf("%s: %d %s, want 404 not-found", r.name, got.status, got.body)
						}
						if gate != 0 || !sees {
							if g, w := got.normalized(ownedID), ghost.normalized(ghostID); g != w {
								t.Errorf("%s: the answer differs from a repository that does not exist's:\n%s\nwant\n%s", r.name, g, w)
							}
						}
						if r.name == "syncRepo" && got.status == 202 {
							idle(t, s, ownedID)
						}
					}
					// The operator's working repository is everybody's
					// the gate lets read.
					if p.gateAnswer(u, routes[0]) == 0 {
						if a := visCall(t, s, routes[0], "local", u.token); a.status != 200 || strings.Contains(a.body, "addedBy") {
							t.Errorf("operator repository: %d %s", a.status, a.body)
						}
					}
				})
			}
			// Webhook deliveries are signed by the secret, not by a user:
			// they reach the owned repository in every posture.
			push := `{"ref":"refs/heads/main","before":"0","after":"1","repository":{"full_name":"acme/annrepo"}}`
			code, _, body := s.do("POST", "/api/v1/webhooks/github", strings.NewReader(push), "Content-Type", "application/json",
				"X-GitHub-Event", "push", "X-GitHub-Delivery", fmt.Sprintf("vis-%d", i), "X-Hub-Signature-256", sign("s3cret", push))
			if code != 202 || !strings.Contains(body, `"repoID":"annrepo"`) {
				t.Errorf("webhook push: %d %s", code, body)
			}
			idle(t, s, ownedID)
		})
	}

	// Back to auth on: the admins and the owner remove; nobody else could.
	t.Run("removal", func(t *testing.T) {
		s := startServer(t, private, impl.Options{})
		del := visRoutes("")[11]
		for _, c := range []struct {
			u  visUser
			id string
		}{{adminByEmail, "annrep2"}, {adminByGroup, "annrep3"}, {owner, ownedID}} {
			if a := visCall(t, s, del, c.id, c.u.token); a.status != 204 {
				t.Errorf("%s removes %s: %d %s", c.u.name, c.id, a.status, a.body)
			}
		}
		checkVisibleList(t, s, postures[0], owner)
	})
}

// checkVisibleList checks GET /api/v1/repos for u in p: the operator's
// repository, and the onboarded ones when u sees them, with addedBy only
// for the owner and admins.
func checkVisibleList(t *testing.T, s *testServer, p visPosture, u visUser) {
	t.Helper()
	list := visRoute{name: "listRepos", ok: 200}
	if gate := p.gateAnswer(u, list); gate != 0 {
		if code, _, body := s.do("GET", "/api/v1/repos", nil, bearerHeader(u.token)...); code != gate {
			t.Errorf("list: %d %s, want %d", code, body, gate)
		}
		return
	}
	resp, err := s.c.ListReposWithResponse(ctx(t), bearerEditor(u.token))
	if err != nil || resp.JSON200 == nil {
		t.Fatalf("list: %v %s", err, resp.Body)
	}
	onboarded := s.app.Registry().List()
	want := []string{"local"}
	if p.sees(u) {
		want = nil
		for _, r := range onboarded {
			want = append(want, r.ID)
		}
	}
	var got []string
	for _, r := range *resp.JSON200 {
		got = append(got, r.Id)
		showOwner := p.users && (u.owner || u.admin) && r.Id != "local"
		switch {
		case showOwner && (r.AddedBy == nil || r.AddedBy.Subject != "ann-sub" || r.AddedBy.Email == nil || *r.AddedBy.Email != "ann@example.com"):
			t.Errorf("list: %s addedBy %+v, want the owner", r.Id, r.AddedBy)
		case !showOwner && r.AddedBy != nil:
			t.Errorf("list: %s shows addedBy %+v", r.Id, *r.AddedBy)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("list = %v, want %v", got, want)
	}
	// singleRepo counts what the caller sees, too.
	if c, err := s.c.GetConfigWithResponse(ctx(t), bearerEditor(u.token)); err != nil || c.JSON200 == nil || c.JSON200.SingleRepo != (len(want) == 1) {
		t.Errorf("config: %v %s, want singleRepo %v", err, c.Body, len(want) == 1)
	}
	if !showsNoUser(string(resp.Body)) && !(p.users && (u.owner || u.admin)) {
		t.Errorf("list shows a user: %s", resp.Body)
	}
}

// showsNoUser reports whether a body names none of the matrix's users.
func showsNoUser(body string) bool {
	for _, w := range []string{"ann-sub", "ann@example.com", "addedBy"} {
		if strings.Contains(body, w) {
			return false
		}
	}
	return true
}

func bearerHeader(token string) []string {
	if token == "" {
		return nil
	}
	return []string{"Authorization", "Bearer " + token}
}

// TestRepoOwnerOnPostgres: on PostgreSQL, who onboarded a repository is
// kept in the database: a replica that starts later (Restore), one that
// adopts a repository onboarded while it runs (Adopt), and a restarted
// one all show it to its owner only.
func TestRepoOwnerOnPostgres(t *testing.T) {
	idp := startIDP(t)
	ann := idToken(t, idp, jwt.MapClaims{"sub": "ann-sub", "email": "ann@example.com"})
	bob := idToken(t, idp, jwt.MapClaims{"sub": "bob-sub", "email": "bob@example.com"})
	first, second := newUpstream(t, "acme/first.git"), newUpstream(t, "acme/second.git")
	cfg := pgConfig(t)
	cfg.Auth = "oidc"
	cfg.OIDCIssuer, cfg.OIDCClientID, cfg.OIDCClientSecret = idp.Issuer(), idp.ClientID, idp.ClientSecret
	cfg.AllowAnyUser = true
	onboardAs := func(s *testServer, url, id string) {
		t.Helper()
		resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: url, Id: &id}, bearerEditor(ann))
		if err != nil || resp.JSON201 == nil {
			t.Fatalf("onboard %s: %v %s", id, err, resp.Body)
		}
	}
	getRepo := visRoutes("")[0]
	check := func(s *testServer, id string) {
		t.Helper()
		resp, err := s.c.GetRepoWithResponse(ctx(t), id, bearerEditor(ann))
		if err != nil || resp.JSON200 == nil {
			t.Fatalf("owner: %v %s", err, resp.Body)
		}
		if a := resp.JSON200.AddedBy; a == nil || a.Subject != "ann-sub" || a.Email == nil || *a.Email != "ann@example.com" {
			t.Fatalf("owner sees addedBy %+v", a)
		}
		ghostID := strings.Repeat("q", len(id)) // never onboarded, as long as id
		other, ghost := visCall(t, s, getRepo, id, bob), visCall(t, s, getRepo, ghostID, bob)
		if other.status != 404 || other.normalized(id) != ghost.normalized(ghostID) {
			t.Fatalf("another user:\n%s\nwant\n%s", other.normalized(id), ghost.normalized(ghostID))
		}
	}

	a := startServer(t, cfg, impl.Options{})
	onboardAs(a, first.url, "first")
	cfgB := cfg
	cfgB.ReplicaID = "replica-b"
	b := startServer(t, cfgB, impl.Options{})
	idle(t, b, "first")
	check(b, "first") // restored from the database at start-up
	onboardAs(a, second.url, "second")
	waitLog(t, b, "serving a repository another replica onboarded")
	check(b, "second") // adopted while running
	a = restart(t, a, cfg, impl.Options{})
	idle(t, a, "second")
	check(a, "first")
	check(a, "second")
}

// TestAuditLogPerUser: the audit log records who did what (the actor's
// e-mail and subject, the operation, the repository), and shows the
// whole log to admins only: any other user reads their own entries.
func TestAuditLogPerUser(t *testing.T) {
	idp := startIDP(t)
	ann := idToken(t, idp, jwt.MapClaims{"sub": "ann-sub", "email": "ann@example.com"})
	bob := idToken(t, idp, jwt.MapClaims{"sub": "bob-sub", "email": "bob@example.com"})
	root := idToken(t, idp, jwt.MapClaims{"sub": "root-sub", "email": "root@example.com"})
	up := newUpstream(t, "acme/audited.git")
	cfg := mirrorConfig(t)
	cfg.Auth = "oidc"
	cfg.OIDCIssuer, cfg.OIDCClientID, cfg.OIDCClientSecret = idp.Issuer(), idp.ClientID, idp.ClientSecret
	cfg.AllowAnyUser = true
	cfg.Admins = []string{"root@example.com"}
	s := startServer(t, cfg, impl.Options{})
	id := "audited"
	if resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: up.url, Id: &id}, bearerEditor(ann)); err != nil || resp.JSON201 == nil {
		t.Fatalf("onboard: %v %s", err, resp.Body)
	}
	if resp, err := s.c.SyncRepoWithResponse(ctx(t), id, nil, bearerEditor(ann)); err != nil || resp.JSON200 == nil {
		t.Fatalf("owner's sync: %v %s", err, resp.Body)
	}
	if resp, err := s.c.SyncRepoWithResponse(ctx(t), id, nil, bearerEditor(bob)); err != nil || resp.StatusCode() != 404 {
		t.Fatalf("another user's sync: %v %d %s", err, resp.StatusCode(), resp.Body)
	}
	type entry struct{ actor, subject, action, repo, outcome string }
	read := func(token string) []entry {
		t.Helper()
		resp, err := s.c.ListAuditWithResponse(ctx(t), nil, bearerEditor(token))
		if err != nil || resp.JSON200 == nil {
			t.Fatalf("audit: %v %s", err, resp.Body)
		}
		var out []entry
		for _, e := range *resp.JSON200 {
			out = append(out, entry{e.Actor, deref(e.Subject), e.Action, deref(e.Repo), e.Outcome})
		}
		return out
	}
	annSync := entry{"ann@example.com", "ann-sub", "syncRepo", id, "200"}
	bobSync := entry{"bob@example.com", "bob-sub", "syncRepo", id, "404"}
	all := read(root)
	if len(all) != 3 || all[0] != bobSync || all[1] != annSync || all[2].subject != "ann-sub" || all[2].action != "createRepo" {
		t.Fatalf("the admin's audit log = %+v", all)
	}
	if got := read(bob); !slices.Equal(got, []entry{bobSync}) {
		t.Errorf("bob's audit log = %+v, want only his own entry", got)
	}
	if got := read(ann); len(got) != 2 || got[0] != annSync || got[1].action != "createRepo" {
		t.Errorf("ann's audit log = %+v, want only her own entries", got)
	}
}

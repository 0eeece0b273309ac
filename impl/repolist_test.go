package impl_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/store"
)

// listRepos is GET /api/v1/repos as the caller of token ("": anonymous).
func listRepos(t *testing.T, s *testServer, token string) string {
	t.Helper()
	code, _, body := s.do("GET", "/api/v1/repos", nil, bearerHeader(token)...)
	if code != 200 {
		t.Fatalf("list: %d %s", code, body)
	}
	return body
}

// listOfItems is the list GET /api/v1/repos must answer for ids: the
// answers of GET /api/v1/repos/{id}, each encoded by its own request,
// between brackets.
func listOfItems(t *testing.T, s *testServer, token string, ids []string) string {
	t.Helper()
	items := make([]string, 0, len(ids))
	for _, id := range ids {
		code, _, body := s.do("GET", "/api/v1/repos/"+id, nil, bearerHeader(token)...)
		if code != 200 {
			t.Fatalf("repo %s: %d %s", id, code, body)
		}
		items = append(items, strings.TrimSuffix(body, "\n"))
	}
	return "[" + strings.Join(items, ",") + "]\n"
}

// fleetRepos is how many repositories TestRepoListAtScale serves.
const fleetRepos = 500

// TestRepoListAtScale: with 500 repositories onboarded by different users
// (restored from the store, never cloned), GET /api/v1/repos answers each
// caller exactly the items GET /api/v1/repos/{id} answers, one by one, for
// the repositories the caller may see, in id order: the items encoded in
// advance are those a request encodes. After a sync (the working
// repository's version, counts and sync status change) and a removal, the
// list follows.
func TestRepoListAtScale(t *testing.T) {
	idp := startIDP(t)
	token := func(sub, email string) string {
		return idToken(t, idp, jwt.MapClaims{"sub": sub, "email": email, "email_verified": true})
	}
	local := stackRepo(t)
	cfg := baseConfig(t, local.Dir)
	cfg.AllowPrivateRemotes = true
	cfg.Auth = "oidc"
	cfg.OIDCIssuer, cfg.OIDCClientID, cfg.OIDCClientSecret = idp.Issuer(), idp.ClientID, idp.ClientSecret
	cfg.AllowAnyUser, cfg.PublicReads = true, true
	cfg.Admins = []string{"root@example.com"}

	// Onboarded by ann, by bob, and while auth was off (nobody's).
	owners := []store.Repo{{AddedBySubject: "ann-sub", AddedByEmail: "ann@example.com"}, {AddedBySubject: "bob-sub", AddedByEmail: "bob@example.com"}, {}}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenFor(ctx(t), "", cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	all := []string{"local"}
	sees := map[string][]string{"ann": {"local"}, "bob": {"local"}}
	for i := range fleetRepos {
		id := fmt.Sprintf("r%03d", i)
		r := owners[i%3]
		r.ID, r.URL, r.CreatedAt = id, "git://127.0.0.1:9/acme/"+id+".git", time.Now()
		if err := st.AddRepo(ctx(t), r); err != nil {
			t.Fatal(err)
		}
		all = append(all, id)
		if i%3 != 1 {
			sees["ann"] = append(sees["ann"], id)
		}
		if i%3 != 0 {
			sees["bob"] = append(sees["bob"], id)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	s := startServerNoStart(t, cfg, impl.Options{})

	callers := []struct {
		name, token string
		sees        []string
	}{
		{"ann", token("ann-sub", "ann@example.com"), sees["ann"]},
		{"bob", token("bob-sub", "bob@example.com"), sees["bob"]},
		{"admin", token("root-sub", "root@example.com"), all},
		{"anonymous", "", []string{"local"}},
	}
	check := func(when string) {
		t.Helper()
		for _, c := range callers {
			// Twice: encoded, then from what was kept.
			for range 2 {
				if got, want := listRepos(t, s, c.token), listOfItems(t, s, c.token, c.sees); got != want {
					t.Fatalf("%s, %s's list (%d bytes) is not the items of %d repositories (%d bytes)", when, c.name, len(got), len(c.sees), len(want))
				}
			}
		}
	}
	check("at start")
	admin := callers[2].token
	before := listRepos(t, s, admin)

	local.Git("update-ref", "refs/heads/fleet", "main")
	code, _, body := s.do("POST", "/api/v1/repos/local/sync", nil, bearerHeader(admin)...)
	if code != 200 {
		t.Fatalf("sync: %d %s", code, body)
	}
	if after := listRepos(t, s, admin); after == before {
		t.Fatal("the list did not change after a sync")
	}
	check("after a sync")

	if code, _, body := s.do("DELETE", "/api/v1/repos/r000", nil, bearerHeader(callers[0].token)...); code != 204 {
		t.Fatalf("remove r000: %d %s", code, body)
	}
	callers[0].sees = callers[0].sees[:1+copy(callers[0].sees[1:], callers[0].sees[2:])]
	callers[2].sees = callers[2].sees[:1+copy(callers[2].sees[1:], callers[2].sees[2:])]
	if strings.Contains(listRepos(t, s, admin), `"id":"r000"`) {
		t.Fatal("a removed repository is still listed")
	}
	check("after a removal")
}

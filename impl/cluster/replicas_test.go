package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl/auth/authtest"
	"github.com/stackd/stackd/impl/metrics/metricstest"
	"github.com/stackd/stackd/impl/store/pgtest"
)

// idToken is an ID token of an allowed user, signed by the provider.
func idToken(t *testing.T, idp *mockoidc.MockOIDC) string {
	t.Helper()
	now := time.Now()
	tok, err := idp.Keypair.SignJWT(jwt.MapClaims{
		"iss": idp.Issuer(), "aud": idp.ClientID, "sub": "robot", "iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(), "email": "robot@example.com", "email_verified": true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// view returns a replica's view of repo: its ETag and bytes.
func (r *replica) view(t *testing.T, repo string) (string, []byte) {
	t.Helper()
	code, hdr, body := r.do(t, "GET", "/api/v1/repos/"+repo+"/view", nil)
	if code != 200 {
		t.Fatalf("view of %s on %s: %d %s", repo, r.name, code, body)
	}
	return hdr.Get("ETag"), body
}

func (r *replica) sync(t *testing.T, repo string) client.SyncResult {
	t.Helper()
	res, err := r.c.SyncRepoWithResponse(ctx(t), repo, &client.SyncRepoParams{})
	if err != nil || res.JSON200 == nil {
		t.Fatalf("sync of %s on %s: %v %d %s", repo, r.name, err, res.StatusCode(), res.Body)
	}
	return *res.JSON200
}

// sameView waits until every replica serves the first one's view: the
// same ETag (version and content hash) and the same bytes.
func sameView(t *testing.T, d time.Duration, repo string, rs ...*replica) string {
	t.Helper()
	var etag string
	within(t, d, "the same view on every replica", func() bool {
		e0, b0 := rs[0].view(t, repo)
		for _, r := range rs[1:] {
			if e, b := r.view(t, repo); e != e0 || !bytes.Equal(b, b0) {
				return false
			}
		}
		etag = e0
		return true
	})
	return etag
}

func changed(res client.SyncResult, ref, sha string) bool {
	for _, u := range res.UpdatedRefs {
		if u.Ref == ref && u.NewSha != nil && *u.NewSha == sha {
			return true
		}
	}
	return false
}

// TestReplicasActAsOne: three replicas (separate processes of the built
// binary) on one PostgreSQL database and one data directory behave as
// one server to a client that alternates between them:
//
//   - an onboarding through A is served by B and C at once, from the
//     clone A made (one upload-pack session in all);
//   - a sync through A shows in B's view within a second, with the same
//     version and bytes; B's event stream gets view_updated and the
//     relayed sync_finished; GET .../syncs/{id} answers the same on every
//     replica;
//   - 50 concurrent syncs spread over the three never run two fetches of
//     the repository at once (at most one upload-pack session at a time
//     at the remote; exactly one fetched the change), each answers with
//     a run that started after it, and the replicas' logs name the lease
//     holders, which their metrics count (stackd_lease_holds_total, one
//     wait each, none held after);
//   - a browser session made through one replica is valid on another, a
//     sign-in may start on one and end on another, a sign-out on one
//     ends the session on all;
//   - a removal through one is gone from the others, and the directory
//     with it.
func TestReplicasActAsOne(t *testing.T) {
	pg := pgtest.Shared(t)
	idp := authtest.StartIDP(t)
	up := newUpstream(t, "app.git")
	rc := replicaConfig{
		databaseURL: pg.NewDatabase(t),
		dataDir:     filepath.Join(t.TempDir(), "shared"),
		oidc:        true,
		extra: []string{"--auth", "oidc", "--oidc-issuer", idp.Issuer(), "--oidc-client-id", idp.ClientID,
			"--allowed-domains", "example.com"},
		env:     []string{"STACKD_OIDC_CLIENT_SECRET=" + idp.ClientSecret},
		metrics: true,
	}
	a := startReplica(t, "a", rc)
	b := startReplica(t, "b", rc)
	c := startReplica(t, "c", rc)
	all := []*replica{a, b, c}
	token := idToken(t, idp)
	for _, r := range all {
		r.token = token
	}

	// Onboarding through A: B and C serve it from A's clone.
	created, err := a.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: up.url, Id: ptr("app")})
	if err != nil || created.JSON201 == nil {
		t.Fatalf("onboarding through a: %v %d %s", err, created.StatusCode(), created.Body)
	}
	for _, r := range []*replica{b, c} {
		within(t, 5*time.Second, "the onboarded repository on "+r.name, func() bool {
			code, _, _ := r.do(t, "GET", "/api/v1/repos/app", nil)
			return code == 200
		})
	}
	sameView(t, 5*time.Second, "app", all...)
	if n, _, _ := up.proxy.Stats(); n != 1 {
		t.Fatalf("%d upload-pack sessions after the onboarding, want 1 (a's clone)", n)
	}
	for _, r := range []*replica{b, c} {
		if r.logs.count("serving a repository another replica onboarded", "id", "app") != 1 {
			t.Errorf("%s did not serve the repository a onboarded", r.name)
		}
	}

	// A sync through A shows in B's view within a second.
	evB := b.events(t, "app")
	second := up.change("second")
	res := a.sync(t, "app")
	answered := time.Now()
	if !changed(res, "refs/heads/main", second) || res.ViewVersion == nil || res.Replica == nil || *res.Replica != "a" {
		t.Fatalf("sync through a: %+v", res)
	}
	v := *res.ViewVersion
	evB.waitFor(t, time.Second, "view_updated", fmt.Sprintf(`"version":%d`, v))
	if took := time.Since(answered); took > time.Second {
		t.Fatalf("b's view followed after %s", took)
	}
	etagA, bodyA := a.view(t, "app")
	if etagB, bodyB := b.view(t, "app"); etagB != etagA || !bytes.Equal(bodyB, bodyA) || !strings.HasPrefix(etagA, fmt.Sprintf(`"%d-`, v)) {
		t.Fatalf("views after the sync: a %s, b %s (same bytes: %v)", etagA, etagB, bytes.Equal(bodyA, bodyB))
	}
	evB.waitFor(t, 10*time.Second, "sync_finished", `"id":"`+res.Id+`"`)
	var first []byte
	for _, r := range all {
		code, _, body := r.do(t, "GET", "/api/v1/repos/app/syncs/"+res.Id, nil)
		if code != 200 {
			t.Fatalf("GET sync on %s: %d %s", r.name, code, body)
		}
		if first == nil {
			first = body
		} else if !bytes.Equal(body, first) {
			t.Fatalf("GET sync differs between replicas:\n%s\n%s", first, body)
		}
	}
	sameView(t, 5*time.Second, "app", all...)

	// 50 concurrent syncs spread over the replicas.
	before, beforePacks, _ := up.proxy.Stats()
	leasesBefore := 0
	for _, r := range all {
		leasesBefore += r.logs.count("refresh lease taken", "repo", "app")
	}
	holdsBefore, waitsBefore := leaseMetrics(t, all)
	third := up.change("third")
	var wg sync.WaitGroup
	results := make([]client.SyncResult, 50)
	codes := make([]int, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := all[i%3].c.SyncRepoWithResponse(ctx(t), "app", &client.SyncRepoParams{})
			if err != nil {
				t.Error(err)
				return
			}
			codes[i] = resp.StatusCode()
			if resp.JSON200 != nil {
				results[i] = *resp.JSON200
			}
		}()
	}
	wg.Wait()
	fetched := 0
	for i, res := range results {
		if codes[i] != 200 || res.State != client.SyncResultStateSucceeded || res.ViewVersion == nil || *res.ViewVersion <= v {
			t.Fatalf("sync %d through %s: %d %+v", i, all[i%3].name, codes[i], res)
		}
		if changed(res, "refs/heads/main", third) {
			fetched++
		}
	}
	sessions, packs, concurrent := up.proxy.Stats()
	t.Logf("50 syncs: %d upload-pack sessions, %d with a pack, %d reported the change", sessions-before, packs-beforePacks, fetched)
	if concurrent != 1 {
		t.Fatalf("%d upload-pack sessions ran at once, want 1", concurrent)
	}
	if packs-beforePacks != 1 || fetched != 1 {
		t.Fatalf("the change was fetched %d times and reported by %d syncs, want 1 and 1", packs-beforePacks, fetched)
	}
	leases := -leasesBefore
	for _, r := range all {
		leases += r.logs.count("refresh lease taken", "repo", "app")
	}
	if leases < sessions-before {
		t.Fatalf("%d lease holders logged for %d sessions", leases, sessions-before)
	}
	// The replicas' metrics count those leases: every hold with its wait,
	// and none held once the runs ended.
	holds, waits := leaseMetrics(t, all)
	if holds-holdsBefore < float64(leases) || waits-waitsBefore != holds-holdsBefore {
		t.Fatalf("stackd_lease_holds_total moved by %v and stackd_lease_wait_seconds_count by %v, for %d leases logged",
			holds-holdsBefore, waits-waitsBefore, leases)
	}
	for _, r := range all {
		within(t, 10*time.Second, "no lease held by "+r.name, func() bool {
			return metricstest.Get(t, r.metricsAddr).Value("stackd_leases_held", nil) == 0
		})
	}
	// And time their PostgreSQL store's operations.
	putSyncs := 0.0
	for _, r := range all {
		sc := metricstest.Get(t, r.metricsAddr)
		if n := sc.Value("stackd_store_query_duration_seconds", map[string]string{"engine": "postgres"}); n == 0 {
			t.Fatalf("%s timed no store operation on postgres", r.name)
		}
		putSyncs += sc.Value("stackd_store_query_duration_seconds", map[string]string{"engine": "postgres", "operation": "put_sync"})
	}
	if putSyncs == 0 {
		t.Fatal("no replica timed a put_sync on postgres")
	}
	sameView(t, 5*time.Second, "app", all...)

	// A browser session made through one replica is valid on another.
	signIn := func(start, finish *replica) *http.Cookie {
		t.Helper()
		jar, _ := cookiejar.New(nil)
		browser := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Path == "/auth/callback" {
				return http.ErrUseLastResponse
			}
			return nil
		}}
		resp, err := browser.Get(start.url + "/auth/login?return=/api/v1/me")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		callback, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || resp.StatusCode != http.StatusFound || callback.Path != "/auth/callback" {
			t.Fatalf("sign-in on %s: %d to %q", start.name, resp.StatusCode, resp.Header.Get("Location"))
		}
		// The load balancer sends the callback to another replica.
		callback.Host = strings.TrimPrefix(finish.url, "http://")
		resp, err = browser.Get(callback.String())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// The callback redirects to the return path, /api/v1/me.
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"authenticatedBy":"session"`) {
			t.Fatalf("sign-in started on %s, callback on %s: %d %s", start.name, finish.name, resp.StatusCode, body)
		}
		u, _ := url.Parse(finish.url)
		for _, ck := range jar.Cookies(u) {
			if ck.Name == "stackd_session" {
				return ck
			}
		}
		t.Fatalf("no session cookie after signing in through %s and %s", start.name, finish.name)
		return nil
	}
	me := func(r *replica, cookie *http.Cookie) (int, string) {
		t.Helper()
		saved := r.token
		r.token = ""
		defer func() { r.token = saved }()
		code, _, body := r.do(t, "GET", "/api/v1/me", nil, "Cookie", cookie.String())
		return code, string(body)
	}
	for _, pair := range [][2]*replica{{a, a}, {b, c}} {
		cookie := signIn(pair[0], pair[1])
		for _, r := range all {
			if code, body := me(r, cookie); code != 200 || !strings.Contains(body, `"authenticatedBy":"session"`) {
				t.Fatalf("a session made through %s and %s, used on %s: %d %s", pair[0].name, pair[1].name, r.name, code, body)
			}
		}
		saved := c.token
		c.token = ""
		code, _, body := c.do(t, "POST", "/auth/logout", nil, "Cookie", cookie.String(), "X-Stackd-CSRF", "1")
		c.token = saved
		if code != 204 {
			t.Fatalf("sign-out on c: %d %s", code, body)
		}
		if code, body := me(a, cookie); code != 401 {
			t.Fatalf("a session signed out on c, used on a: %d %s", code, body)
		}
	}

	// A removal through B is gone from the others, and so is the
	// directory; the event streams of every replica get repo_removed and
	// end.
	streams := map[string]*eventStream{}
	for _, r := range []*replica{a, b, c} {
		streams[r.name] = r.events(t, "app")
	}
	if code, _, body := b.do(t, "DELETE", "/api/v1/repos/app", nil); code != 204 {
		t.Fatalf("removal through b: %d %s", code, body)
	}
	for name, st := range streams {
		st.waitFor(t, 5*time.Second, "repo_removed", `"id":"app"`)
		select {
		case ev, ok := <-st.ch:
			if ok {
				t.Fatalf("%s's stream went on after repo_removed: %+v", name, ev)
			}
		case <-time.After(5 * time.Second): // failure guard
			t.Fatalf("%s's stream did not end after repo_removed", name)
		}
	}
	if _, err := os.Stat(filepath.Join(rc.dataDir, "mirrors", "app.git")); !os.IsNotExist(err) {
		t.Fatalf("the mirror directory after the removal: %v", err)
	}
	for _, r := range []*replica{a, c} {
		within(t, 5*time.Second, "the removal on "+r.name, func() bool {
			code, _, _ := r.do(t, "GET", "/api/v1/repos/app", nil)
			return code == 404
		})
		if r.logs.count("repository removed by another replica", "id", "app") != 1 {
			t.Errorf("%s did not log the removal", r.name)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestReplicaKilledMidFetch: a replica killed (SIGKILL) in the middle of a
// fetch loses its lease: a sync sent to another replica while the fetch
// stalls waits for the lease (it connects to nobody meanwhile), and once
// the holder is dead it runs and completes; the mirror is fsck-clean and
// the dead holder's temporary pack is gone.
func TestReplicaKilledMidFetch(t *testing.T) {
	pg := pgtest.Shared(t)
	up := newUpstream(t, "app.git")
	dbURL := pg.NewDatabase(t)
	rc := replicaConfig{databaseURL: dbURL, dataDir: filepath.Join(t.TempDir(), "shared")}
	a := startReplica(t, "a", rc)
	b := startReplica(t, "b", rc)
	created, err := a.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: up.url, Id: ptr("app")})
	if err != nil || created.JSON201 == nil {
		t.Fatalf("onboarding: %v %s", err, created.Body)
	}
	within(t, 5*time.Second, "the onboarded repository on b", func() bool {
		code, _, _ := b.do(t, "GET", "/api/v1/repos/app", nil)
		return code == 200
	})

	// Enough data that the pack does not fit in one read of the proxy.
	big := make([]byte, 256<<10)
	for i := range big {
		big[i] = byte(i*7 + i/251)
	}
	up.work.Commit("big", map[string]string{"big.bin": string(big)})
	tip := up.change("after-big")
	up.proxy.Arm()
	if code, _, body := b.do(t, "POST", "/api/v1/repos/app/sync?wait=false", nil); code != 202 {
		t.Fatalf("sync through b: %d %s", code, body)
	}
	select {
	case <-up.proxy.Stalled:
	case <-time.After(30 * time.Second): // failure guard
		t.Fatal("b's fetch never reached the pack")
	}
	sessions, _, _ := up.proxy.Stats()

	code, _, body := a.do(t, "POST", "/api/v1/repos/app/sync?wait=false", nil)
	if code != 202 {
		t.Fatalf("sync through a: %d %s", code, body)
	}
	var queued client.SyncResult
	if err := json.Unmarshal(body, &queued); err != nil {
		t.Fatal(err)
	}
	waitForLeaseWaiter(t, dbURL)
	if n, _, _ := up.proxy.Stats(); n != sessions {
		t.Fatalf("a connected to the upstream while b held the lease")
	}

	b.kill()
	var done client.SyncResult
	within(t, 30*time.Second, "a's sync after b was killed", func() bool {
		res, err := a.c.GetSyncWithResponse(ctx(t), "app", queued.Id)
		if err != nil || res.JSON200 == nil {
			t.Fatalf("GET sync: %v", err)
		}
		done = *res.JSON200
		return done.State == client.SyncResultStateSucceeded || done.State == client.SyncResultStateFailed
	})
	if done.State != client.SyncResultStateSucceeded || !changed(done, "refs/heads/main", tip) || *done.Replica != "a" {
		t.Fatalf("a's sync after b died: %+v", done)
	}
	if _, _, concurrent := up.proxy.Stats(); concurrent != 1 {
		t.Fatalf("%d upload-pack sessions ran at once", concurrent)
	}
	dir := filepath.Join(rc.dataDir, "mirrors", "app.git")
	if out, err := exec.Command("git", "-C", dir, "fsck", "--full", "--strict").CombinedOutput(); err != nil {
		t.Fatalf("git fsck: %v\n%s", err, out)
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "tmp_*")); len(tmp) != 0 {
		t.Fatalf("the dead holder's temporary files are still there: %v", tmp)
	}
	if a.logs.count("refresh lease taken", "repo", "app") == 0 {
		t.Fatal("a's log does not name it as the lease holder")
	}
	if got := strings.TrimSpace(run(t, dir, "rev-parse", "refs/heads/main")); got != tip {
		t.Fatalf("the mirror's main is %s, want %s", got, tip)
	}
}

func run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// waitForLeaseWaiter waits until a session of the database waits for an
// advisory lock (a replica waits for a lease).
func waitForLeaseWaiter(t *testing.T, url string) {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	within(t, 20*time.Second, "a replica waiting for the lease", func() bool {
		var n int
		if err := conn.QueryRow(ctx(t), `SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
}

// TestStartupSweepSparesAnotherReplicasClone: a replica that starts while
// another one clones an onboarded repository into the shared data
// directory leaves that clone alone (its lease is held elsewhere); once
// the cloning replica is dead, the next replica to start removes what it
// left.
func TestStartupSweepSparesAnotherReplicasClone(t *testing.T) {
	pg := pgtest.Shared(t)
	up := newUpstream(t, "big.git")
	// Enough data that the pack does not fit in one read of the proxy.
	big := make([]byte, 256<<10)
	for i := range big {
		big[i] = byte(i*7 + i/251)
	}
	up.work.Commit("big", map[string]string{"big.bin": string(big)})
	up.work.Git("push", "-q", "origin", "HEAD:refs/heads/main")
	rc := replicaConfig{databaseURL: pg.NewDatabase(t), dataDir: filepath.Join(t.TempDir(), "shared")}
	a := startReplica(t, "a", rc)

	up.proxy.Arm()
	onboarded := make(chan int, 1)
	go func() {
		// Never answered: a is killed in the middle of the clone.
		req, _ := http.NewRequestWithContext(ctx(t), "POST", a.url+"/api/v1/repos",
			strings.NewReader(`{"url":"`+up.url+`","id":"big"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			onboarded <- 0
			return
		}
		resp.Body.Close()
		onboarded <- resp.StatusCode
	}()
	select {
	case <-up.proxy.Stalled:
	case <-time.After(30 * time.Second): // failure guard
		t.Fatal("a's clone never reached the pack")
	}
	mirrors := filepath.Join(rc.dataDir, "mirrors")
	clones := func() []string {
		m, err := filepath.Glob(filepath.Join(mirrors, ".big*"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if len(clones()) == 0 {
		t.Fatal("no clone in progress in the shared directory")
	}

	b := startReplica(t, "b", rc) // its start-up sweep ran before it listened
	if len(clones()) == 0 {
		t.Fatal("b's start-up sweep deleted a's clone in progress")
	}
	if b.logs.count("not sweeping a mirror another replica is working on", "id", "big") != 1 {
		t.Fatalf("b does not say why it left the clone alone:\n%s", b.logs.String())
	}

	a.kill()
	if code := <-onboarded; code != 0 {
		t.Fatalf("an onboarding whose replica was killed answered %d", code)
	}
	c := startReplica(t, "c", rc)
	if left := clones(); len(left) != 0 {
		t.Fatalf("the dead replica's clone is still there after c started: %v", left)
	}
	if c.logs.count("removed leftovers of interrupted clones", "id", "big") != 1 {
		t.Fatalf("c does not log the leftovers it removed:\n%s", c.logs.String())
	}
	if code, _, _ := c.do(t, "GET", "/api/v1/repos/big", nil); code != 404 {
		t.Fatalf("the repository whose onboarding died: %d on c, want 404", code)
	}
}

// leaseMetrics sums stackd_lease_holds_total and the count of
// stackd_lease_wait_seconds over the replicas' metrics listeners.
func leaseMetrics(t *testing.T, rs []*replica) (holds, waits float64) {
	t.Helper()
	for _, r := range rs {
		sc := metricstest.Get(t, r.metricsAddr)
		holds += sc.Value("stackd_lease_holds_total", nil)
		waits += sc.Value("stackd_lease_wait_seconds", nil)
	}
	return holds, waits
}

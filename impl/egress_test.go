package impl_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/mirror/mirrortest"
)

const remoteNotAllowed = "/problems/remote-not-allowed"

// refusedOnboarding asserts that onboarding u answers 400
// remote-not-allowed and leaves nothing behind.
func refusedOnboarding(t *testing.T, s *testServer, dataDir, u string, id *string) {
	t.Helper()
	resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: u, Id: id})
	if err != nil {
		t.Fatal(err)
	}
	p := resp.ApplicationproblemJSON400
	if resp.StatusCode() != 400 || p == nil || p.Type != remoteNotAllowed {
		t.Fatalf("onboard %s: %d %s, want 400 %s", u, resp.StatusCode(), resp.Body, remoteNotAllowed)
	}
	if len(s.app.Registry().List()) != 0 {
		t.Fatalf("onboard %s left a repository", u)
	}
	entries, _ := os.ReadDir(filepath.Join(dataDir, "mirrors"))
	if len(entries) != 0 {
		t.Fatalf("onboard %s left %d entries in the mirrors directory", u, len(entries))
	}
}

// TestOnboardingCannotBeAimedInward: without --allow-private-remotes,
// onboarding refuses loopback, private, link-local and metadata addresses,
// by literal or by a name that resolves there when the connection is made,
// over every transport, with 400 remote-not-allowed; no connection reaches
// a listener.
func TestOnboardingCannotBeAimedInward(t *testing.T) {
	ln4 := mirrortest.Listen(t, "127.0.0.1:0")
	ln6 := mirrortest.Listen(t, "[::1]:0")
	p4 := strconv.Itoa(ln4.Addr().(*net.TCPAddr).Port)
	p6 := strconv.Itoa(ln6.Addr().(*net.TCPAddr).Port)
	resolver, queries := mirrortest.DNS(t, netip.MustParseAddr("127.0.0.1"))

	cfg := baseConfig(t, "") // private remotes not allowed: the default
	cfg.AllowedRemoteHosts = []string{"localhost", "127.0.0.1", "::1", "10.0.0.1", "169.254.169.254", "*.rebind.test", "github.com"}
	s := startServer(t, cfg, impl.Options{RemoteResolver: resolver})
	for _, u := range []string{
		"git://127.0.0.1:" + p4 + "/x.git",
		"https://127.0.0.1:" + p4 + "/x.git",
		"https://10.0.0.1/x.git",
		"git://10.0.0.1/x.git",
		"https://169.254.169.254/latest/meta-data/x",
		"http://169.254.169.254/latest/meta-data/x", // plain http: refused as well
		"https://[::1]:" + p6 + "/x.git",
		"git://[::1]:" + p6 + "/x.git",
		"git://localhost:" + p4 + "/x.git",   // a name: refused after resolution
		"https://localhost:" + p4 + "/x.git", // the same over https
		"https://git.rebind.test:" + p4 + "/x.git",
		"git://git.rebind.test:" + p4 + "/x.git",
		"ssh://git@github.com/acme/x.git", // ssh only from the config file, with a key
		"git@github.com:acme/x.git",
	} {
		refusedOnboarding(t, s, cfg.DataDir, u, nil)
	}
	if queries.Load() == 0 {
		t.Fatal("the rebinding name was never resolved: it was not checked at connect time")
	}
	mirrortest.NoConnection(t, ln4)
	mirrortest.NoConnection(t, ln6)
}

// TestAllowedRemoteHosts: --allowed-remote-hosts restricts onboarding to
// its patterns, before any connection.
func TestAllowedRemoteHosts(t *testing.T) {
	up := newUpstream(t, "acme/widgets.git") // git daemon on 127.0.0.1
	cfg := mirrorConfig(t)
	cfg.AllowedRemoteHosts = []string{"github.com", "*.example.com", "127.0.0.1"}
	s := startServer(t, cfg, impl.Options{})
	for _, u := range []string{
		"https://gitlab.com/acme/x.git",
		"https://example.com/acme/x.git",
		"https://git.example.com.attacker.test/acme/x.git",
		strings.Replace(up.url, "127.0.0.1", "localhost", 1),
	} {
		refusedOnboarding(t, s, cfg.DataDir, u, nil)
	}
	onboard(t, s, up.url)
}

// TestUpstreamErrorBodyNeverReachesClient: an upstream answering 404 with
// a 300 MiB body: the problem says what failed, does not quote the body,
// and the server reads little of it (its allocations stay far below the
// body's size).
func TestUpstreamErrorBodyNeverReachesClient(t *testing.T) {
	const secret = "UPSTREAM-SECRET-c0ffee"
	sent := make(chan int64, 4)
	up := mirrortest.ServeHTTP(t, t.TempDir(), true, func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			code := http.StatusNotFound
			if strings.Contains(r.URL.Path, "private") {
				code = http.StatusUnauthorized
			}
			w.WriteHeader(code)
			chunk := bytes.Repeat([]byte(secret+" "), 32<<10/(len(secret)+1))
			var n int64
			for n < 300<<20 {
				k, err := w.Write(chunk)
				n += int64(k)
				if err != nil {
					break
				}
			}
			sent <- n
		})
	})
	cfg := mirrorConfig(t)
	s := startServer(t, cfg, impl.Options{RemoteRootCAs: mirrortest.Pool(up.Server)})

	for _, tc := range []struct{ path, detail string }{
		{"/acme/gone.git", "could not clone: repository not found (HTTP 404)"},
		{"/acme/private.git", "could not clone: authentication required (HTTP 401)"},
	} {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: up.URL + tc.path})
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		p := resp.ApplicationproblemJSON502
		if resp.StatusCode() != 502 || p == nil || p.Detail == nil || !strings.Contains(*p.Detail, tc.detail) {
			t.Fatalf("onboard %s: %d %s, want 502 with %q", tc.path, resp.StatusCode(), resp.Body, tc.detail)
		}
		if strings.Contains(string(resp.Body), secret) {
			t.Fatalf("the upstream's body reached the client: %s", resp.Body)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
			t.Fatalf("onboarding allocated %d MiB for a 300 MiB error body", grew>>20)
		}
		if n := <-sent; n >= 300<<20 {
			t.Fatalf("the upstream sent its whole body (%d bytes)", n)
		}
	}
	// The log has the detail, truncated.
	logs := s.logs.String()
	if !strings.Contains(logs, secret) || strings.Count(logs, secret) > 200 {
		t.Fatalf("the log should hold a truncated detail; it has %d copies of the body text", strings.Count(logs, secret))
	}
}

// TestOperatorCredentialsBoundToDeclaredRepos: credentials from the
// environment or the file reach the declared repository's host only:
// never another host a redirect leads to, never an onboarded mirror, even
// one whose id maps to the same STACKD_REPO_<ID>_* variables.
func TestOperatorCredentialsBoundToDeclaredRepos(t *testing.T) {
	root := httpUpstreams(t, "up.git", "someone/widgets.git", "someone/api.git")
	other := mirrortest.ServeHTTP(t, root, true, nil)
	declared := mirrortest.ServeHTTP(t, root, true, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if rest, ok := strings.CutPrefix(r.URL.Path, "/moved.git"); ok {
				http.Redirect(w, r, other.URL+"/up.git"+rest+"?"+r.URL.RawQuery, http.StatusMovedPermanently)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	t.Setenv("STACKD_REPO_MY_REPO_PASSWORD", "tok-declared")
	t.Setenv("STACKD_REPO_MOVED_PASSWORD", "tok-moved")
	t.Setenv("STACKD_REPO_WIDGETS_PASSWORD", "tok-widgets") // no such configured repo
	cfg := mirrorConfig(t)
	cfg.Repos = []config.RepoConfig{
		{ID: "my-repo", URL: declared.URL + "/up.git"},
		{ID: "moved", URL: declared.URL + "/moved.git", Username: "bot", Password: "tok-file"},
	}
	s := startServer(t, cfg, impl.Options{RemoteRootCAs: mirrortest.Pool(declared.Server, other.Server)})
	syncOK(t, s, "my-repo")
	syncOK(t, s, "moved") // cloned from the other host, without credentials

	onboard(t, s, other.URL+"/someone/widgets.git")
	// An id that maps onto the configured repo's variables
	// (STACKD_REPO_MY_REPO_*).
	resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: other.URL + "/someone/api.git", Id: strptr("my_repo")})
	if err != nil || resp.JSON201 == nil {
		t.Fatalf("onboard as my_repo: %v %d %s", err, resp.StatusCode(), resp.Body)
	}

	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:tok-declared"))
	got := declared.Auths()
	if !containsString(got, want) {
		t.Fatalf("the declared host never got its token: %q", got)
	}
	if other.Requests() == 0 {
		t.Fatal("the other host was never asked")
	}
	for _, a := range other.Auths() {
		if a != "" {
			t.Fatalf("the other host received credentials: %q", a)
		}
	}
}

// TestConfiguredRemotesChecked: repositories of the config file are held
// to the same address rules, and ssh needs a key (never the agent).
func TestConfiguredRemotesChecked(t *testing.T) {
	for _, tc := range []struct {
		name string
		rc   config.RepoConfig
		want error
	}{
		{"loopback", config.RepoConfig{ID: "a", URL: "git://127.0.0.1:9418/a.git"}, mirror.ErrForbiddenAddress},
		{"private", config.RepoConfig{ID: "a", URL: "https://192.168.1.10/a.git"}, mirror.ErrForbiddenAddress},
		{"plain http", config.RepoConfig{ID: "a", URL: "http://git.example.com/a.git"}, mirror.ErrPlainHTTP},
		{"ssh without key", config.RepoConfig{ID: "a", URL: "ssh://git@github.com/acme/a.git"}, mirror.ErrSSHKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t, "")
			cfg.Repos = []config.RepoConfig{tc.rc}
			app, err := impl.New(cfg, slogDiscard(), impl.Options{})
			if err == nil {
				app.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("New = %v, want %v", err, tc.want)
			}
		})
	}
	// ssh with a key file (relative to the config file when given there).
	cfg := baseConfig(t, "")
	cfg.Repos = []config.RepoConfig{{ID: "a", URL: "ssh://git@github.com/acme/a.git", SSHKey: writeSSHKey(t)}}
	app, err := impl.New(cfg, slogDiscard(), impl.Options{})
	if err != nil {
		t.Fatalf("New with sshKey: %v", err)
	}
	app.Close()
}

// httpUpstreams creates bare repositories (the stack fixture) under a new
// root, one per name, for git http-backend.
func httpUpstreams(t *testing.T, names ...string) string {
	t.Helper()
	w := stackRepo(t)
	w.Git("checkout", "-q", "main")
	root := t.TempDir()
	for _, name := range names {
		bare := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(bare), 0o755); err != nil {
			t.Fatal(err)
		}
		w.Run(root, "clone", "-q", "--bare", w.Dir, bare)
	}
	return root
}

func writeSSHKey(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestRefusalsNameTheFlag: an onboarding refused by the remote policy says
// which serve flag would allow it (--allow-local-remotes,
// --allow-private-remotes, --allowed-remote-hosts), and its detail repeats
// nothing of the request: not the URL, its host or path, nor the address a
// name resolved to.
func TestRefusalsNameTheFlag(t *testing.T) {
	ln := mirrortest.Listen(t, "127.0.0.1:0")
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	resolver, _ := mirrortest.DNS(t, netip.MustParseAddr("127.0.0.1"))
	dir := filepath.Join(t.TempDir(), "zzlocalpath")
	for _, tc := range []struct {
		name    string
		hosts   []string
		url     string
		flag    string
		private []string // parts of the request the answer must not carry
	}{
		{"file URL", nil, "file://" + dir, "--allow-local-remotes", []string{"zzlocalpath"}},
		{"plain path", nil, dir, "--allow-local-remotes", []string{"zzlocalpath"}},
		{"loopback literal", nil, "git://127.0.0.1:" + port + "/zzrepo.git", "--allow-private-remotes", []string{"127.0.0.1", "zzrepo"}},
		{"private literal", nil, "https://10.9.8.7/zzrepo.git", "--allow-private-remotes", []string{"10.9.8.7", "zzrepo"}},
		{"name resolving to loopback", nil, "git://zzname.rebind.test:" + port + "/zzrepo.git", "--allow-private-remotes", []string{"zzname", "127.0.0.1", "zzrepo"}},
		{"plain http", nil, "http://zzname.example.com/zzrepo.git", "--allow-private-remotes", []string{"zzname", "zzrepo"}},
		{"host not allowed", []string{"github.com"}, "https://zzname.example.org/zzrepo.git", "--allowed-remote-hosts", []string{"zzname", "zzrepo"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t, "") // local and private remotes not allowed: the default
			cfg.AllowedRemoteHosts = tc.hosts
			s := startServer(t, cfg, impl.Options{RemoteResolver: resolver})
			refusedOnboarding(t, s, cfg.DataDir, tc.url, strptr("zzid"))
			resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: tc.url, Id: strptr("zzid")})
			if err != nil || resp.ApplicationproblemJSON400 == nil || resp.ApplicationproblemJSON400.Detail == nil {
				t.Fatalf("%v %s", err, resp.Body)
			}
			if d := *resp.ApplicationproblemJSON400.Detail; !strings.Contains(d, tc.flag) {
				t.Errorf("the detail does not name %s: %q", tc.flag, d)
			}
			for _, p := range append(tc.private, "zzid") {
				if strings.Contains(string(resp.Body), p) {
					t.Errorf("the answer repeats %q: %s", p, resp.Body)
				}
			}
		})
	}
	mirrortest.NoConnection(t, ln)
}

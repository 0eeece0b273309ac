package impl_test

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/refresh"
)

// problemBody decodes a problem+json body.
func problemBody(t *testing.T, body string) client.Problem {
	t.Helper()
	var p client.Problem
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("not a problem: %v: %s", err, body)
	}
	return p
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) })
}

// TestRemoteIsNeverALocalPath: a remote that is a filesystem path or a
// file:// URL is shown as null, in the repository and in its view; a
// network remote is shown without its credentials.
func TestRemoteIsNeverALocalPath(t *testing.T) {
	upstream := stackRepo(t)
	for _, tc := range []struct {
		name, origin string
		want         *string
	}{
		{"absolute path", upstream.Dir, nil},
		{"relative path", "../" + filepath.Base(upstream.Dir), nil},
		{"file URL", "file://" + upstream.Dir, nil},
		{"https with a token", "https://user:s3cret@git.example.com/acme/x.git", strptr("https://git.example.com/acme/x.git")},
		{"scp-like", "git@github.com:acme/x.git", strptr("github.com:acme/x.git")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := stackRepo(t)
			r.Git("remote", "add", "origin", tc.origin)
			s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
			repo, err := s.c.GetRepoWithResponse(ctx(t), "local")
			if err != nil || repo.JSON200 == nil {
				t.Fatalf("get repo: %v", err)
			}
			if got := repo.JSON200.Remote; (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
				t.Fatalf("remote = %v, want %v", deref(got), deref(tc.want))
			}
			for _, p := range []string{"/api/v1/repos", "/api/v1/repos/local", "/api/v1/repos/local/view", "/api/v1/repos/local/syncs"} {
				_, _, body := s.do("GET", p, nil)
				if strings.Contains(body, upstream.Dir) || strings.Contains(body, "s3cret") {
					t.Fatalf("%s shows the remote: %s", p, body)
				}
			}
		})
	}

	// A file:// mirror, allowed by --allow-local-remotes, is served with
	// no remote either.
	cfg := baseConfig(t, "")
	cfg.AllowLocalRemotes = true
	s := startServer(t, cfg, impl.Options{})
	m := onboard(t, s, "file://"+upstream.Dir)
	if m.Remote != nil {
		t.Fatalf("file:// mirror shows remote %q", *m.Remote)
	}
	for _, p := range []string{"/api/v1/repos", "/api/v1/repos/" + m.Id + "/view"} {
		if _, _, body := s.do("GET", p, nil); strings.Contains(body, upstream.Dir) {
			t.Fatalf("%s shows the mirror's path: %s", p, body)
		}
	}
}

func deref(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

// TestPathParametersValidatedAtTheBoundary: a branch name git could not
// have created, a bad repository id and a bad sync id get 400 whose detail
// names the rule and repeats neither the value nor a control character; a
// valid name that does not exist gets 404 with the name in quoted form.
func TestPathParametersValidatedAtTheBoundary(t *testing.T) {
	r := stackRepo(t)
	s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
	badBranches := []string{
		"--upload-pack=evil", "-x", "a..b", "a\nb", "a\x00b", "a\x1b[31mred", "a b", "a~1", "x^{tree}",
		"a:b", "a?", "a*", "a[b", "a\\b", "a@{1}", "a.lock", "a/.hidden", "/a", "a/", "a//b", "a.", "HEAD",
		"\xff\xfe", strings.Repeat("a", 1025),
	}
	for _, name := range badBranches {
		esc := url.PathEscape(name)
		for _, p := range []string{
			"/api/v1/repos/local/branches/" + esc,
			"/api/v1/repos/local/branches/" + esc + "/diff",
			"/api/v1/repos/local/stacks/" + esc,
		} {
			code, hdr, body := s.do("GET", p, nil)
			if code != 400 || hdr.Get("Content-Type") != "application/problem+json" {
				t.Errorf("GET %s: %d %s", p, code, body)
				continue
			}
			checkNoEcho(t, p, name, body)
		}
	}
	for _, tc := range []struct{ path, value string }{
		{"/api/v1/repos/" + url.PathEscape("lo\ncal") + "/view", "lo\ncal"},
		{"/api/v1/repos/" + url.PathEscape("x\u202egnp.exe") + "/view", "x\u202egnp.exe"},
		{"/api/v1/repos/" + url.PathEscape("--upload-pack=evil") + "/branches/a", "--upload-pack=evil"},
		{"/api/v1/repos/" + strings.Repeat("r", 65), strings.Repeat("r", 65)},
		{"/api/v1/repos/local/syncs/" + url.PathEscape("1;rm -rf"), "1;rm -rf"},
		{"/api/v1/repos/local/syncs/" + url.PathEscape("12\x1b[0m"), "12\x1b[0m"},
		{"/api/v1/repos/local/syncs/" + strings.Repeat("9", 20), strings.Repeat("9", 20)},
	} {
		code, _, body := s.do("GET", tc.path, nil)
		if code != 400 {
			t.Errorf("GET %s: %d %s", tc.path, code, body)
			continue
		}
		checkNoEcho(t, tc.path, tc.value, body)
	}

	// Valid names are echoed in 404s, Go-quoted: a format character such
	// as U+202E appears as an escape, never raw.
	for _, tc := range []struct{ name, want string }{
		{"feature/nope", `no branch "feature/nope" in "local"`},
		{"x\u202egnp", `no branch "x\u202egnp" in "local"`},
	} {
		code, _, body := s.do("GET", "/api/v1/repos/local/branches/"+url.PathEscape(tc.name), nil)
		p := problemBody(t, body)
		if code != 404 || p.Detail == nil || *p.Detail != tc.want || hasControl(*p.Detail) {
			t.Errorf("missing branch %q: %d %s", tc.name, code, body)
		}
	}
	code, _, body := s.do("GET", "/api/v1/repos/local/stacks/"+url.PathEscape("nope/x"), nil)
	if p := problemBody(t, body); code != 404 || p.Detail == nil || *p.Detail != `no stack rooted at "nope/x" in "local"` {
		t.Errorf("missing stack: %d %s", code, body)
	}
	// And a valid name that exists is served.
	if code, _, body := s.do("GET", "/api/v1/repos/local/branches/b", nil); code != 200 {
		t.Errorf("branch b: %d %s", code, body)
	}
}

// checkNoEcho fails when a 400 body repeats value (decoded) or carries a
// control or format character in its detail or instance.
func checkNoEcho(t *testing.T, path, value, body string) {
	t.Helper()
	p := problemBody(t, body)
	if p.Detail == nil || !strings.Contains(*p.Detail, "parameter") {
		t.Errorf("GET %s: detail does not name the parameter: %s", path, body)
		return
	}
	if strings.Contains(*p.Detail, value) || hasControl(*p.Detail) {
		t.Errorf("GET %s: detail echoes the value: %q", path, *p.Detail)
	}
	if p.Instance != nil && hasControl(*p.Instance) {
		t.Errorf("GET %s: instance carries a control character: %q", path, *p.Instance)
	}
}

// TestLocalErrorsNeverReachClients: a disk error, in a working repository
// or under the data dir, is a generic 500 and a generic sync error; its
// path is only in the log. A disk error while storing a fetched pack is
// not a 502.
func TestLocalErrorsNeverReachClients(t *testing.T) {
	t.Run("working repository", func(t *testing.T) {
		r := stackRepo(t)
		s := startServer(t, baseConfig(t, r.Dir), impl.Options{})
		if err := os.Rename(r.Dir+"/.git", r.Dir+"/.git-away"); err != nil {
			t.Fatal(err)
		}
		code, _, body := s.do("POST", "/api/v1/repos/local/sync", nil)
		if code != 500 || strings.Contains(body, r.Dir) {
			t.Fatalf("sync: %d %s", code, body)
		}
		checkStatusHides(t, s, "local", r.Dir)
		if !strings.Contains(s.logs.String(), r.Dir) {
			t.Fatal("the path is not in the log")
		}
	})
	t.Run("data dir", func(t *testing.T) {
		up := newUpstream(t, "acme/widgets.git")
		cfg := mirrorConfig(t)
		s := startServer(t, cfg, impl.Options{})
		onboard(t, s, up.url)
		up.work.Git("checkout", "-q", "c")
		up.work.Commit("c2", map[string]string{"c.txt": "c2\n"})
		up.push("c")
		// The mirror's pack directory becomes a file: storing the pack
		// fails with an error that names it.
		pack := filepath.Join(cfg.DataDir, "mirrors", "widgets.git", "objects", "pack")
		if err := os.Rename(pack, pack+".away"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pack, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, body := s.do("POST", "/api/v1/repos/widgets/sync", nil)
		if code != 500 || strings.Contains(body, cfg.DataDir) {
			t.Fatalf("sync with a broken data dir: %d %s", code, body)
		}
		checkStatusHides(t, s, "widgets", cfg.DataDir)
		if !strings.Contains(s.logs.String(), pack) {
			t.Fatal("the path is not in the log")
		}
		if err := os.Remove(pack); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(pack+".away", pack); err != nil {
			t.Fatal(err)
		}
		syncOK(t, s, "widgets")
	})
}

// checkStatusHides checks that the repository's sync status and history
// show the generic text, not path.
func checkStatusHides(t *testing.T, s *testServer, id, path string) {
	t.Helper()
	repo, err := s.c.GetRepoWithResponse(ctx(t), id)
	if err != nil || repo.JSON200 == nil || repo.JSON200.SyncStatus == nil || repo.JSON200.SyncStatus.LastError == nil {
		t.Fatalf("repo: %v %s", err, repo.Body)
	}
	if got := *repo.JSON200.SyncStatus.LastError; got != refresh.InternalText {
		t.Fatalf("lastError = %q", got)
	}
	hist, err := s.c.ListSyncsWithResponse(ctx(t), id, nil)
	if err != nil || hist.JSON200 == nil || len(*hist.JSON200) == 0 {
		t.Fatalf("history: %v %s", err, hist.Body)
	}
	if e := (*hist.JSON200)[0].Error; e == nil || *e != refresh.InternalText || strings.Contains(string(hist.Body), path) {
		t.Fatalf("history shows %s", hist.Body)
	}
}

// TestUnknownRoutesNeverEchoControlCharacters: the 404 and 405 details
// name the path in its escaped form only.
func TestUnknownRoutesNeverEchoControlCharacters(t *testing.T) {
	s := startServer(t, baseConfig(t, stackRepo(t).Dir), impl.Options{})
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/api/v1/x%1B%5B31m%E2%80%AE", 404},
		{"DELETE", "/api/v1/repos/local/view%0A", 404},
		{"PUT", "/api/v1/repos", 405},
	} {
		code, _, body := s.do(tc.method, tc.path, nil)
		if body = strings.TrimSpace(body); code != tc.status || strings.ContainsAny(body, "\x1b\n\u202e") || strings.Contains(body, `\u001b`) {
			t.Fatalf("%s %s: %d %q", tc.method, tc.path, code, body)
		}
	}
}

package impl_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/refname"
)

var syncIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// fixedDetailText is what the details of these answers say besides the
// value: a fuzzed value found in it proves no echo.
const fixedDetailText = `path parameter "repoID" "branch" "root" "syncID": string doesn't match the regular expression ` +
	`minimum maximum string length is not a valid branch name: it is empty no repository no branch no stack rooted at in ` +
	`no sync of (history keeps the most recent ones) "local" no such route`

// FuzzPathParameters sends fuzzed repository ids, branch names and sync
// ids through the whole HTTP stack (validator, gate, generated routes,
// handlers) of a server with a real repository: never a 5xx; a value that
// breaks its rules gets a 4xx (400 once the route matched) whose detail
// has no control or format character and does not repeat the value; a
// valid but unknown one gets 404 with the value quoted.
func FuzzPathParameters(f *testing.F) {
	for _, seed := range [][3]string{
		{"local", "b", "1"},
		{"local", "feature/login", "2"},
		{"nope", "--upload-pack=evil", "x"},
		{"lo\ncal", "a\nb", "1\n"},
		{"x\u202egnp", "x\u202egnp", "\u202e1"},
		{"-x", "a..b", "99999999999999999999"},
		{"..", "..", ".."},
		{".", ".", "."},
		{"", "", ""},
		{"a/b", "a/b", "1/2"},
		{"%2e%2e", "a%2Fb", "%31"},
		{strings.Repeat("r", 65), strings.Repeat("b", 1025), strings.Repeat("9", 20)},
		{"local", "HEAD", "0"},
		{"local", "a@{1}", "-1"},
		{"local", "\xff", "\xff"},
		{"local", "a\x1b[31m", "1 2"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	r := stackRepo(f)
	cfg := baseConfigB(f, r.Dir)
	app, err := impl.New(cfg, slogDiscard(), impl.Options{Rate: auth.RateLimit{PerSecond: -1}, SyncRate: auth.RateLimit{PerSecond: -1}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(app.Close)
	// The one sync of the local repository: its first read.
	rf, _ := app.Refresh().Get("local")
	firstID := rf.History()[0].ID
	f.Add("local", "b", firstID)
	f.Add("local", "b", "0190b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b") // valid, unknown
	f.Add("local", "b", strings.ToUpper(firstID))
	h := app.Handler()
	get := func(t *testing.T, path string) (int, gen.Problem) {
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1"+path, nil)
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var p gen.Problem
		if rec.Code >= 400 {
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("GET %s: %d with %s", path, rec.Code, ct)
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatalf("GET %s: %d, not a problem: %s", path, rec.Code, rec.Body)
			}
		}
		if rec.Code >= 500 {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		return rec.Code, p
	}
	// routed reports whether a path segment reaches a handler: not empty,
	// not a dot segment, and not a lone "%2F" (which net/http's ServeMux
	// does not match to a {param}; it answers the /api/ 404 problem).
	routed := func(seg string) bool { return seg != "" && seg != "." && seg != ".." && seg != "%2F" }
	check := func(t *testing.T, path, value string, valid, exists bool) {
		code, p := get(t, path)
		detail := ""
		if p.Detail != nil {
			detail = *p.Detail
		}
		if hasControl(detail) {
			t.Fatalf("GET %s: control or format character in %q", path, detail)
		}
		switch {
		case !valid:
			if code < 400 || code >= 500 || routed(url.PathEscape(value)) && code != 400 {
				t.Fatalf("GET %s (invalid): %d %q", path, code, detail)
			}
			if len(value) >= 3 && !strings.Contains(fixedDetailText, value) && strings.Contains(detail, value) {
				t.Fatalf("GET %s: detail repeats the value: %q", path, detail)
			}
		case !exists:
			if code != 404 {
				t.Fatalf("GET %s (unknown): %d %q", path, code, detail)
			}
		default:
			if code != 200 {
				t.Fatalf("GET %s: %d %q", path, code, detail)
			}
		}
	}
	f.Fuzz(func(t *testing.T, repoID, branch, syncID string) {
		check(t, "/api/v1/repos/"+url.PathEscape(repoID)+"/view", repoID, config.ValidID(repoID), repoID == "local")

		valid := refname.Valid(branch)
		exists := valid && (branch == "main" || branch == "a" || branch == "b" || branch == "c")
		esc := url.PathEscape(branch)
		check(t, "/api/v1/repos/local/branches/"+esc, branch, valid, exists)
		check(t, "/api/v1/repos/local/branches/"+esc+"/diff", branch, valid, exists && branch != "main")
		check(t, "/api/v1/repos/local/stacks/"+esc, branch, valid, branch == "a")
		if valid && !exists {
			if _, p := get(t, "/api/v1/repos/local/branches/"+esc); p.Detail == nil || !strings.Contains(*p.Detail, refname.Quote(branch)) {
				t.Fatalf("404 for %q does not quote it: %v", branch, p.Detail)
			}
		}

		check(t, "/api/v1/repos/local/syncs/"+url.PathEscape(syncID), syncID, syncIDPattern.MatchString(syncID), syncID == firstID)
	})
}

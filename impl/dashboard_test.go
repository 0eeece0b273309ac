package impl_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/dashboard"
)

// dashboardAsset is the hashed URL path the server must serve an asset of
// the embedded build at, computed here from the file (its SHA-256), not
// asked of the server.
func dashboardAsset(t *testing.T, name string) string {
	t.Helper()
	u, _ := dashboardFile(t, name)
	return u
}

func dashboardFile(t *testing.T, name string) (string, []byte) {
	t.Helper()
	body, err := fs.ReadFile(dashboard.Build(), name)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	ext := path.Ext(name)
	return "/assets/" + strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:])[:16] + ext, body
}

// TestDashboardRoutes: through the whole stack, every app path (the
// repositories, a repository, a branch whose name has slashes, the sync
// history, a path the app does not know) answers the shell, revalidated,
// under the dashboard's CSP, on GET and HEAD; the shell references the
// assets by their content hash, which are served immutable, gzipped when
// accepted; in the private posture the shell and assets are served to an
// anonymous caller (the app then asks to sign in) while the API is not;
// the Host check guards the shell as everything else.
func TestDashboardRoutes(t *testing.T) {
	idp := startIDP(t)
	dir := stackRepo(t).Dir
	local := startServer(t, baseConfig(t, dir), impl.Options{})
	private := startServer(t, oidcConfig(t, idp, dir), impl.Options{})
	appJS, appBody := dashboardFile(t, "app.js")
	appCSS, _ := dashboardFile(t, "app.css")

	for _, s := range []*testServer{local, private} {
		var shell string
		for _, p := range []string{"/", "/r/local", "/r/local/b/feature/login", "/r/local/b/a%2Fb", "/r/local/syncs", "/r/local/", "/no/such/page"} {
			code, hdr, body := s.raw(t, rawCall{method: "GET", path: p})
			if code != 200 || hdr.Get("Content-Type") != "text/html; charset=utf-8" || hdr.Get("Cache-Control") != "no-cache" || hdr.Get("ETag") == "" {
				t.Fatalf("GET %s: %d %v\n%.300s", p, code, hdr, body)
			}
			checkSecurityHeaders(t, "GET "+p, hdr, false)
			csp := hdr.Get("Content-Security-Policy")
			if csp != dashboard.CSP || strings.Contains(csp, "unsafe-") || !strings.Contains(csp, "script-src 'self';") || strings.Contains(csp, "http") {
				t.Errorf("GET %s: Content-Security-Policy %q", p, csp)
			}
			if !strings.Contains(body, `src="`+appJS+`"`) || !strings.Contains(body, `href="`+appCSS+`"`) || strings.Contains(body, `"/assets/app.js"`) {
				t.Fatalf("GET %s: the shell does not reference %s and %s:\n%s", p, appJS, appCSS, body)
			}
			if shell == "" {
				shell = body
			} else if body != shell {
				t.Errorf("GET %s: another shell", p)
			}
			hc, hh, hb := s.raw(t, rawCall{method: "HEAD", path: p})
			if hc != 200 || hb != "" || hh.Get("Content-Length") != fmt.Sprint(len(body)) || hh.Get("Content-Security-Policy") != dashboard.CSP {
				t.Errorf("HEAD %s: %d %v %q", p, hc, hh, hb)
			}
		}

		// The hashed asset: immutable, gzipped when accepted.
		code, hdr, body := s.raw(t, rawCall{method: "GET", path: appJS})
		if code != 200 || body != string(appBody) || hdr.Get("Cache-Control") != "public, max-age=31536000, immutable" ||
			hdr.Get("Content-Type") != "text/javascript; charset=utf-8" || hdr.Get("ETag") == "" || hdr.Get("Vary") != "Accept-Encoding" {
			t.Fatalf("GET %s: %d %v", appJS, code, hdr)
		}
		checkSecurityHeaders(t, "GET "+appJS, hdr, false)
		code, hdr, body = s.raw(t, rawCall{method: "GET", path: appJS, hdr: []string{"Accept-Encoding", "gzip"}})
		if code != 200 || hdr.Get("Content-Encoding") != "gzip" || hdr.Get("Cache-Control") != "public, max-age=31536000, immutable" {
			t.Fatalf("GET %s (gzip): %d %v", appJS, code, hdr)
		}
		zr, err := gzip.NewReader(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if unzipped, err := io.ReadAll(zr); err != nil || !bytes.Equal(unzipped, appBody) {
			t.Fatalf("GET %s (gzip): %v, %d bytes", appJS, err, len(unzipped))
		}
		if code, hdr, _ := s.raw(t, rawCall{method: "GET", path: appJS, hdr: []string{"If-None-Match", hdr.Get("ETag"), "Accept-Encoding", "gzip"}}); code != 304 {
			t.Errorf("GET %s revalidated: %d %v", appJS, code, hdr)
		}

		// Unknown assets and API paths are problems, not the shell.
		for _, p := range []string{"/assets/nope.js", "/api/v1/nope", "/api/v1/repos/local/nope", "/auth/nope", "/openapi.yml", "/readyz/x"} {
			code, hdr, body := s.raw(t, rawCall{method: "GET", path: p})
			checkProblem(t, "GET "+p, code, hdr, body, p)
			if code != 404 {
				t.Errorf("GET %s: %d", p, code)
			}
		}
		code, hdr, body = s.raw(t, rawCall{method: "POST", path: "/", body: "{}", hdr: []string{"Content-Type", "application/json"}})
		if checkProblem(t, "POST /", code, hdr, body, "/"); code != 405 || hdr.Get("Allow") != "GET, HEAD" {
			t.Errorf("POST /: %d %v", code, hdr)
		}
	}

	// The private posture: the API refuses the anonymous caller, the
	// shell does not (it carries no data).
	if code, _, _ := private.raw(t, rawCall{method: "GET", path: "/api/v1/repos"}); code != 401 {
		t.Errorf("private: GET /api/v1/repos anonymously: %d", code)
	}
	// A foreign Host (DNS rebinding) gets no shell.
	code, hdr, body := local.raw(t, rawCall{method: "GET", path: "/r/local", hdr: []string{"Host", "rebind.example"}})
	if code != 421 || hdr.Get("Content-Type") != "application/problem+json" {
		t.Errorf("GET /r/local with a foreign Host: %d %s", code, body)
	}
}

// pageWatch records, from the browser's events, what a page did: the URLs
// it requested, the responses it got, and every error it reported
// (uncaught exceptions, console.error and console.assert, error entries of
// the browser log, among them failed loads and CSP refusals).
type pageWatch struct {
	mu        sync.Mutex
	requested []string
	responses map[string]*network.Response // by URL
	errors    []string
}

func (w *pageWatch) listen(ev any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		w.requested = append(w.requested, e.Request.URL)
	case *network.EventResponseReceived:
		w.responses[e.Response.URL] = e.Response
		if e.Response.Status >= 400 {
			w.errors = append(w.errors, fmt.Sprintf("HTTP %d for %s", e.Response.Status, e.Response.URL))
		}
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		text := d.Text
		if d.Exception != nil {
			text += " " + d.Exception.Description
		}
		w.errors = append(w.errors, "exception: "+text)
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
			var args []string
			for _, a := range e.Args {
				args = append(args, a.Description+string(a.Value))
			}
			w.errors = append(w.errors, "console."+string(e.Type)+": "+strings.Join(args, " "))
		}
	case *cdplog.EventEntryAdded:
		if e.Entry.Level == cdplog.EntryLevelError {
			w.errors = append(w.errors, "log ("+string(e.Entry.Source)+"): "+e.Entry.Text+" "+e.Entry.URL)
		}
	}
}

// snapshot returns copies of what was recorded.
func (w *pageWatch) snapshot() (requested, errors []string, responses map[string]*network.Response) {
	w.mu.Lock()
	defer w.mu.Unlock()
	responses = map[string]*network.Response{}
	for k, v := range w.responses {
		responses[k] = v
	}
	return append([]string(nil), w.requested...), append([]string(nil), w.errors...), responses
}

// TestDashboardInBrowser loads the dashboard in headless Chromium from the
// server, at / and at deep links reloaded as such: the app runs (at /
// it lists the served repository, read from the API), without one console
// error or Content-Security-Policy violation, every request stays on the
// server's origin (no CDN, no web font: the page works offline), the
// assets arrive by their hashed URLs and gzipped; and the policy is in
// force: an injected inline script does not run.
func TestDashboardInBrowser(t *testing.T) {
	browser := startBrowser(t) // first: skips at once without chromium
	s := startServer(t, baseConfig(t, stackRepo(t).Dir), impl.Options{})
	origin, err := url.Parse(s.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	run, cancel := context.WithTimeout(browser, 90*time.Second)
	defer cancel()
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(run, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	watch := &pageWatch{responses: map[string]*network.Response{}}
	if err := chromedp.Listen(run, watch.listen); err != nil {
		t.Fatal(err)
	}
	step("record CSP violations", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspRecorder})
		return err
	}))

	appJS, _ := dashboardFile(t, "app.js")
	for _, tc := range []struct {
		path string
		text string // shown once the app ran ("" for any text)
	}{
		{"/", "local"},
		{"/r/local", "Login flow"},    // the fixture's stack title
		{"/r/local/b/b", "b2"},        // a branch of it, with its commits
		{"/r/local/syncs", "onboard"}, // the history: the first read
		{"/no/such/page", ""},
	} {
		wait := `document.body.innerText.trim().length > 0`
		if tc.text != "" {
			wait = `document.body.innerText.includes(` + fmt.Sprintf("%q", tc.text) + `)`
		}
		step("load "+tc.path,
			chromedp.Navigate(s.srv.URL+tc.path),
			chromedp.Poll[chromedp.Void](wait),
		)
		// A round trip after the wait: the browser's events up to here
		// have been handled (Listen sees an event before the reply of a
		// command that follows it).
		violations, err := chromedp.Run(run, chromedp.Evaluate[[]string]("window.__cspViolations"))
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		requested, errs, responses := watch.snapshot()
		if len(violations) != 0 || len(errs) != 0 {
			t.Fatalf("%s: CSP violations %q, errors %q", tc.path, violations, errs)
		}
		for _, u := range requested {
			pu, err := url.Parse(u)
			if err != nil || pu.Scheme == "data" {
				continue
			}
			if pu.Scheme != origin.Scheme || pu.Host != origin.Host {
				t.Errorf("%s: a request to another origin: %s", tc.path, u)
			}
		}
		doc := responses[s.srv.URL+tc.path]
		if doc == nil || doc.Status != 200 || header(doc.Headers, "Content-Security-Policy") != dashboard.CSP {
			t.Fatalf("%s: the document's response %+v", tc.path, doc)
		}
		app := responses[s.srv.URL+appJS]
		if app == nil || app.Status != 200 || header(app.Headers, "Content-Encoding") != "gzip" {
			t.Fatalf("%s: %s not loaded gzipped: %+v (requested %q)", tc.path, appJS, app, requested)
		}
	}

	step("inject an inline script",
		chromedp.Evaluate[chromedp.Void](`(() => { const s = document.createElement('script'); s.textContent = 'window.__injected = true'; document.body.appendChild(s); })()`),
		chromedp.Poll[chromedp.Void]("window.__cspViolations.length > 0"),
	)
	injected, err := chromedp.Run(run, chromedp.Evaluate[bool]("window.__injected === true"))
	if err != nil || injected {
		t.Fatalf("an injected inline script ran under the CSP: %v %v", injected, err)
	}
}

// header reads a response header of the protocol, whose names keep the
// case they were sent with.
func header(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return fmt.Sprint(v)
		}
	}
	return ""
}

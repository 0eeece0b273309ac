package impl_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/refresh"
)

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// startBrowser starts a headless Chromium with a fresh profile and no
// background networking, and returns a chromedp context for one tab. The
// browser lives until the test's cleanup; if the test failed by then, a
// screenshot of the page is written into a fresh directory under os.TempDir
// (which outlives the test) and its path logged.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("STACKD_BROWSER") == "require" {
			t.Fatalf("chromium not installed, and STACKD_BROWSER=require (.ci/run): %v", err)
		}
		t.Skipf("chromium not installed (.ci/run installs it and sets STACKD_BROWSER=require): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1024),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
	)
	// The outer deadline bounds the browser's whole life, start-up
	// included; steps run under a shorter one (see TestSwaggerUI), so a
	// screenshot can still be taken after a step timed out.
	life, cancelLife := context.WithTimeout(context.Background(), 2*time.Minute)
	alloc, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelLife()
	})
	if err := chromedp.Do(browser); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		shot, cancel := context.WithTimeout(browser, 10*time.Second)
		defer cancel()
		png, err := chromedp.Run(shot, chromedp.FullScreenshot(100)) // quality 100 is PNG
		if err != nil {
			t.Logf("screenshot failed: %v", err)
			return
		}
		// Not t.TempDir: that is removed when the test ends.
		dir, err := os.MkdirTemp("", "stackd-"+t.Name()+"-")
		if err != nil {
			t.Logf("screenshot dir: %v", err)
			return
		}
		p := filepath.Join(dir, "failure.png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Logf("write screenshot: %v", err)
			return
		}
		t.Logf("screenshot of the page: %s", p)
	})
	return browser
}

// TestSwaggerUI drives the embedded Swagger UI at /docs/ in headless
// Chromium on an OIDC server: executing the sync operation without
// credentials shows 401; after "Authorize" with a bearer ID token the same
// execution shows 200 with the sync result, and the server recorded a
// manual run and an audit entry for the token's subject.
func TestSwaggerUI(t *testing.T) {
	browser := startBrowser(t) // first: skips at once without chromium
	idp := startIDP(t)
	s := startServer(t, oidcConfig(t, idp, stackRepo(t).Dir), impl.Options{})
	tok := idToken(t, idp, nil)

	// Failure guard for the steps: every wait below is on a DOM condition.
	run, cancel := context.WithTimeout(browser, 90*time.Second)
	defer cancel()
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(run, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(what string, sel chromedp.CSS) string {
		t.Helper()
		v, err := chromedp.Run(run, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}

	const op = `#operations-sync-syncRepo`
	const statusSel = op + ` .live-responses-table tbody .response-col_status`
	const bodySel = op + ` .live-responses-table tbody .response-col_description .highlight-code pre`
	execute := func(what string) (code, shown string) {
		t.Helper()
		step(what,
			chromedp.Click(chromedp.CSS(op+` .execute`)),
			chromedp.WaitVisible(chromedp.CSS(statusSel)),
		)
		return strings.TrimSpace(text(what+": status", statusSel)), text(what+": body", bodySel)
	}
	manualRuns := func() []refresh.Result {
		rf, ok := s.app.Refresh().Get("local")
		if !ok {
			t.Fatal("no refresher for local")
		}
		var out []refresh.Result
		for _, r := range rf.History() {
			if r.Trigger == refresh.Manual {
				out = append(out, r)
			}
		}
		return out
	}

	// Every Content-Security-Policy violation of the page is recorded, so
	// the policy is shown to let the UI do all it does below.
	step("record CSP violations", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspRecorder})
		return err
	}))
	step("load /docs/",
		chromedp.Navigate(s.srv.URL+"/docs/"),
		chromedp.WaitVisible(chromedp.CSS(op)),
	)
	step("open the sync operation and try it out",
		chromedp.Click(chromedp.CSS(op+` .opblock-summary-control`)),
		chromedp.WaitVisible(chromedp.CSS(op+` .try-out__btn`)),
		chromedp.Click(chromedp.CSS(op+` .try-out__btn`)),
		chromedp.WaitVisible(chromedp.CSS(op+` tr[data-param-name="repoID"] input`)),
		chromedp.SendKeys(chromedp.CSS(op+` tr[data-param-name="repoID"] input`), "local"),
	)

	// Anonymous: the gate refuses, nothing runs.
	if code, body := execute("execute without authorizing"); code != "401" {
		t.Fatalf("without authorizing: status %q, body %s", code, body)
	}
	if runs := manualRuns(); len(runs) != 0 {
		t.Fatalf("an anonymous execute ran a sync: %+v", runs)
	}
	step("clear the response",
		chromedp.Click(chromedp.CSS(op+` .btn-clear`)),
		chromedp.WaitNotPresent(chromedp.CSS(op+` .live-responses-table`)),
	)

	// Authorize with the bearer token (the dialog also offers cookieAuth;
	// the bearer form is the one holding #auth-bearer-value).
	const bearerAuthorize = `//input[@id="auth-bearer-value"]/ancestor::form//button[contains(concat(" ", normalize-space(@class), " "), " authorize ")]`
	step("authorize with the bearer token",
		chromedp.Click(chromedp.CSS(`.auth-wrapper .authorize`)),
		chromedp.WaitVisible(chromedp.CSS(`#auth-bearer-value`)),
		chromedp.SendKeys(chromedp.CSS(`#auth-bearer-value`), tok),
		chromedp.Click(chromedp.Search(bearerAuthorize)),
		chromedp.WaitNotPresent(chromedp.CSS(`#auth-bearer-value`)), // replaced by "******" once authorized
		chromedp.Click(chromedp.CSS(`.modal-ux .btn-done`)),
		chromedp.WaitNotPresent(chromedp.CSS(`.modal-ux`)),
		chromedp.WaitVisible(chromedp.CSS(`.auth-wrapper .authorize.locked`)),
	)

	code, body := execute("execute after authorizing")
	if code != "200" || !strings.Contains(body, `"mode": "reread"`) || !strings.Contains(body, `"trigger": "manual"`) {
		t.Fatalf("after authorizing: status %q, body %s", code, body)
	}
	var shown refresh.Result
	if err := json.Unmarshal([]byte(body), &shown); err != nil {
		t.Fatalf("response body shown is not a sync result: %v\n%s", err, body)
	}

	// Server side: the click ran exactly one manual sync, the one shown,
	// and the audit log has it under the token's subject.
	runs := manualRuns()
	if len(runs) != 1 || runs[0].ID != shown.ID || runs[0].Mode != refresh.ModeReread || runs[0].State != refresh.Succeeded {
		t.Fatalf("manual runs = %+v, shown id %q", runs, shown.ID)
	}
	auditCode, _, audit := s.do("GET", "/api/v1/audit", nil, "Authorization", "Bearer "+tok)
	if auditCode != 200 || !strings.Contains(audit, `"action":"syncRepo"`) || !strings.Contains(audit, "robot@example.com") {
		t.Fatalf("audit: %d %s", auditCode, audit)
	}

	// The UI did all of the above under its Content-Security-Policy
	// without a single violation, and the policy is in force: an inline
	// script that is not the page's own is refused (and recorded).
	violations, err := chromedp.Run(run, chromedp.Evaluate[[]string]("window.__cspViolations"))
	if err != nil || len(violations) != 0 {
		t.Fatalf("CSP violations while using the UI: %v %v", violations, err)
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

// cspRecorder runs in each new document before its scripts and keeps the
// Content-Security-Policy violations in window.__cspViolations.
const cspRecorder = `window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));`

package impl_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// The end-to-end tests of the dashboard: Debian's Chromium (startBrowser)
// against real stackd servers serving real repositories, built with the git
// CLI, and real upstreams (git daemon) and identity provider (mockoidc).
// One browser serves every subtest; each server gets its own tab in its own
// browser context (no shared cookies). Every wait is chromedp.Poll on the
// DOM, under generous deadlines.

// e2eInstrument runs in every document of a tab before its scripts. It
// reports every Content-Security-Policy violation as a console error (the
// tab's pageWatch records those across navigations) and keeps them in
// window.__cspViolations; window.__pwned, which the hostile fixture's
// payloads would set, reports any write as a console error; __e2e holds
// the tests' DOM helpers (by data-testid).
const e2eInstrument = `(() => {
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', e => {
  const v = e.violatedDirective + ' ' + e.blockedURI;
  window.__cspViolations.push(v);
  console.error('CSP violation: ' + v);
});
Object.defineProperty(window, '__pwned', {
  configurable: false,
  get() { return undefined; },
  set(v) { console.error('PWNED: a payload ran and set window.__pwned = ' + v); },
});
const all = (id, root) => [...(root || document).querySelectorAll('[data-testid="' + id + '"]')];
window.__e2e = {
  all,
  one: (id, root) => all(id, root)[0] || null,
  texts: (id, root) => all(id, root).map(e => e.textContent),
  text: (id, root) => { const e = all(id, root)[0]; return e ? e.textContent : null; },
  card: name => all('branch-card').find(e => e.dataset.branch === name) || null,
  row: id => all('repo-row').find(e => e.dataset.repo === id) || null,
};
})();`

// e2eTab is one tab on one server, with what its pages did.
type e2eTab struct {
	// t is the (sub)test the tab's steps report to; a tab that lives
	// through several subtests is handed to each in turn.
	t       *testing.T
	ctx     context.Context // the tab, under the subtest's deadline
	base    string          // the server's URL
	watch   *pageWatch
	allowed map[string]bool // other origins the tab may ask (scheme://host)

	mu      sync.Mutex
	dialogs []string
}

// newTab opens a tab in a new browser context of browser, on the server at
// base, for the rest of t, with every step under one deadline.
func newTab(t *testing.T, browser context.Context, base string, allowedOrigins ...string) *e2eTab {
	t.Helper()
	tabCtx, closeTab := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	run, cancel := context.WithTimeout(tabCtx, 90*time.Second)
	t.Cleanup(func() {
		cancel()
		closeTab()
	})
	tab := &e2eTab{t: t, ctx: run, base: base, watch: &pageWatch{responses: map[string]*network.Response{}}, allowed: map[string]bool{}}
	for _, o := range allowedOrigins {
		tab.allowed[o] = true
	}
	if err := chromedp.Do(run); err != nil { // opens the tab
		t.Fatalf("open a tab: %v", err)
	}
	// After a failure, the page as it was (in a directory that outlives
	// the test).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		shot, cancel := context.WithTimeout(tabCtx, 10*time.Second)
		defer cancel()
		png, err := chromedp.Run(shot, chromedp.CaptureScreenshot())
		if err != nil {
			t.Logf("screenshot of the tab on %s: %v", base, err)
			return
		}
		dir, err := os.MkdirTemp("", "stackd-e2e-failure-")
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "tab.png"), png, 0o644)
		}
		if err != nil {
			t.Logf("screenshot of the tab on %s: %v", base, err)
			return
		}
		t.Logf("screenshot of the tab on %s: %s", base, filepath.Join(dir, "tab.png"))
	})
	// A dialog (alert, confirm) would block the page: it is recorded and
	// dismissed from another goroutine (a listener must not send commands).
	opened := make(chan string, 16)
	if err := chromedp.Listen(run, func(ev any) {
		tab.watch.listen(ev)
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			select {
			case opened <- string(d.Type) + ": " + d.Message:
			default:
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			select {
			case <-run.Done():
				return
			case msg := <-opened:
				tab.mu.Lock()
				tab.dialogs = append(tab.dialogs, msg)
				tab.mu.Unlock()
				_, _ = chromedp.Call(run, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
			}
		}
	}()
	tab.do("instrument the tab", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: e2eInstrument})
		return err
	}))
	return tab
}

func (tab *e2eTab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tab.t.Helper()
	if err := chromedp.Do(tab.ctx, actions...); err != nil {
		tab.t.Fatalf("%s: %v", what, err)
	}
}

// wait polls the page until the JavaScript expression is truthy.
func (tab *e2eTab) wait(what, expr string) {
	tab.t.Helper()
	tab.do(what, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(45*time.Second)))
}

// visit loads path (a document load, as a reload or a link from
// elsewhere would) and waits until ready is truthy.
func (tab *e2eTab) visit(path, ready string) {
	tab.t.Helper()
	tab.do("load "+path, chromedp.Navigate(tab.base+path))
	tab.wait("load "+path+": wait for "+ready, ready)
}

// click clicks the element the expression returns (a mouse click at its
// centre, as a person would).
func (tab *e2eTab) click(what, expr string) {
	tab.t.Helper()
	tab.wait(what+": wait for it", expr)
	tab.do(what, chromedp.Click(chromedp.JSPath(expr)))
}

// clickAway clicks the element the expression returns and waits for the
// document it leads to (a navigation that is not the app's own: sign-in,
// sign-out) to load.
func (tab *e2eTab) clickAway(what, expr string) {
	tab.t.Helper()
	tab.wait(what+": wait for it", expr)
	if _, err := chromedp.Run(tab.ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.JSPath(expr)))); err != nil {
		tab.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](tab *e2eTab, expr string) T {
	tab.t.Helper()
	v, err := chromedp.Run(tab.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tab.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// clean checks what the tab did so far: no console error (uncaught
// exceptions, console.error, failed loads and HTTP errors, CSP violations,
// payloads that ran: e2eInstrument reports the last two as console
// errors), no dialog, and no request to another origin than the server's
// (and the allowed ones).
func (tab *e2eTab) clean(what string) {
	tab.t.Helper()
	// A round trip first: the events before it have been handled.
	violations := eval[[]string](tab, "window.__cspViolations || []")
	requested, errs, _ := tab.watch.snapshot()
	tab.mu.Lock()
	dialogs := append([]string(nil), tab.dialogs...)
	tab.mu.Unlock()
	if len(violations) != 0 || len(errs) != 0 || len(dialogs) != 0 {
		tab.t.Fatalf("%s: CSP violations %q, errors %q, dialogs %q", what, violations, errs, dialogs)
	}
	origin, _ := url.Parse(tab.base)
	for _, u := range requested {
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme == "data" || pu.Scheme == "about" {
			continue
		}
		if o := pu.Scheme + "://" + pu.Host; o != origin.Scheme+"://"+origin.Host && !tab.allowed[o] {
			tab.t.Errorf("%s: a request to another origin: %s", what, u)
		}
	}
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// branchPath is the app's path of a branch: each segment percent-encoded.
func branchPath(repo, branch string) string {
	segs := strings.Split(branch, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/r/" + url.PathEscape(repo) + "/b/" + strings.Join(segs, "/")
}

// teamRepo is a working repository built with the git CLI, with the
// authors and commit dates of a small team (minutes to days before now, so
// that relative times read as they would).
type teamRepo struct {
	t    testing.TB
	Dir  string
	home string
}

func newTeamRepo(t testing.TB) *teamRepo {
	r := &teamRepo{t: t, Dir: filepath.Join(t.TempDir(), "shop"), home: t.TempDir()}
	r.run(nil, filepath.Dir(r.Dir), "-c", "init.defaultBranch=main", "init", "-q", r.Dir)
	return r
}

func (r *teamRepo) run(env []string, dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(gittest.GitEnv(r.home), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *teamRepo) git(args ...string) string {
	r.t.Helper()
	return r.run(nil, r.Dir, args...)
}

// commit writes files (path → content; "" deletes) and commits them as
// author ("Name <email>"), ago before now.
func (r *teamRepo) commit(author string, ago time.Duration, msg string, files map[string]string) string {
	r.t.Helper()
	for p, c := range files {
		full := filepath.Join(r.Dir, p)
		if c == "" {
			if err := os.Remove(full); err != nil {
				r.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.git("add", "-A")
	name, email, _ := strings.Cut(strings.TrimSuffix(author, ">"), " <")
	date := fmt.Sprintf("@%d +0000", time.Now().Add(-ago).Unix())
	r.run([]string{"GIT_AUTHOR_NAME=" + name, "GIT_AUTHOR_EMAIL=" + email, "GIT_AUTHOR_DATE=" + date,
		"GIT_COMMITTER_NAME=" + name, "GIT_COMMITTER_EMAIL=" + email, "GIT_COMMITTER_DATE=" + date},
		r.Dir, "commit", "-q", "--allow-empty", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

// blobRef writes content as a blob and points ref at it.
func (r *teamRepo) blobRef(ref, content string) {
	r.t.Helper()
	cmd := exec.Command("git", "hash-object", "-w", "--stdin")
	cmd.Dir, cmd.Env, cmd.Stdin = r.Dir, gittest.GitEnv(r.home), strings.NewReader(content)
	out, err := cmd.Output()
	if err != nil {
		r.t.Fatal(err)
	}
	r.git("update-ref", ref, strings.TrimSpace(string(out)))
}

const (
	ada   = "Ada Lovelace <ada@example.com>"
	grace = "Grace Hopper <grace@example.com>"
	alan  = "Alan Turing <alan@example.com>"
)

// The session store as auth/session and then auth/login have it: the
// branch page's diff of auth/login shows lines removed and added.
const (
	sessionV2 = `package auth

import "time"

// Session is a signed-in user's session.
type Session struct {
	ID      string
	User    string
	Expires time.Time
}

// TTL is how long a session lasts.
const TTL = 12 * time.Hour

// Valid reports whether s has not expired.
func (s Session) Valid(now time.Time) bool {
	return now.Before(s.Expires)
}
`
	sessionV3 = `package auth

import "time"

// Session is a signed-in user's session.
type Session struct {
	ID       string
	User     string
	Expires  time.Time
	Remember bool
}

// TTL is how long a session lasts; RememberTTL, one the user asked to keep.
const (
	TTL         = 12 * time.Hour
	RememberTTL = 30 * 24 * time.Hour
)

// Valid reports whether s has not expired at now.
func (s Session) Valid(now time.Time) bool {
	return !now.After(s.Expires)
}
`
)

// dashboardFixture is the working repository the screenshots show: trunk
// main; the stack "Login flow" (stackit metadata, titles and PRs):
// auth/session → auth/login (checked out, a draft PR) → auth/logout; the
// stack search/index → search/api (Graphite metadata on the second), whose
// root needs a restack (trunk moved on). 2 stacks, 5 branches, 1 needs a
// restack.
func dashboardFixture(t testing.TB) *teamRepo {
	r := newTeamRepo(t)
	r.commit(grace, 9*24*time.Hour, "Initial commit", map[string]string{
		"README.md":        "# shop\n\nThe shop's web server.\n",
		"go.mod":           "module example.com/shop\n\ngo 1.26\n",
		"cmd/shop/main.go": "package main\n\nfunc main() {}\n",
	})
	r.commit(alan, 6*24*time.Hour, "Add the CI workflow", map[string]string{".github/workflows/ci.yml": "on: [push]\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - run: go test ./...\n"})
	r.git("checkout", "-q", "-b", "search/index")
	r.commit(grace, 4*24*time.Hour, "Index products by name", map[string]string{"search/index.go": "package search\n\n// Index maps words to product ids.\ntype Index map[string][]int\n"})
	r.git("checkout", "-q", "-b", "search/api")
	r.commit(alan, 26*time.Hour, "Add the search endpoint", map[string]string{"search/api.go": "package search\n\n// Handler answers GET /search?q=.\nfunc Handler() {}\n"})
	r.blobRef("refs/branch-metadata/search/api", `{"parentBranchName":"search/index","prInfo":{"number":98,"title":"Search endpoint","state":"OPEN","url":"https://github.com/acme/shop/pull/98","isDraft":false,"base":"search/index"}}`)

	r.git("checkout", "-q", "main")
	r.commit(grace, 3*time.Hour, "Update dependencies", map[string]string{"go.mod": "module example.com/shop\n\ngo 1.26.1\n"})
	main := r.git("rev-parse", "HEAD")

	r.git("checkout", "-q", "-b", "auth/session")
	r.commit(ada, 2*time.Hour+30*time.Minute, "Add a session store", map[string]string{"auth/session.go": strings.Replace(sessionV2, "12 * time.Hour", "24 * time.Hour", 1)})
	r.commit(ada, 2*time.Hour, "Expire sessions after 12 hours", map[string]string{"auth/session.go": sessionV2})
	session := r.git("rev-parse", "HEAD")
	r.git("checkout", "-q", "-b", "auth/login")
	r.commit(ada, 80*time.Minute, "Add the login form", map[string]string{
		"README.md":       "# shop\n\nThe shop's web server, with sign-in.\n\n## Sign-in\n\nUsers sign in with a password and may ask to be remembered for 30 days.\n",
		"auth/session.go": sessionV3,
		"auth/login.go":   "package auth\n\n// Login checks a user's password and starts a session.\nfunc Login(user, password string, remember bool) (Session, error) {\n\treturn Session{User: user, Remember: remember}, nil\n}\n",
	})
	r.commit(grace, 45*time.Minute, "Rate-limit failed logins", map[string]string{"auth/limit.go": "package auth\n\n// MaxFailures is how many failed logins an address gets per minute.\nconst MaxFailures = 5\n"})
	login := r.git("rev-parse", "HEAD")
	r.git("checkout", "-q", "-b", "auth/logout")
	r.commit(alan, 20*time.Minute, "Sign out everywhere", map[string]string{"auth/logout.go": "package auth\n\n// Logout ends every session of user.\nfunc Logout(user string) error { return nil }\n"})

	r.blobRef("refs/stackit/metadata/auth/session", `{"parentBranchName":"main","parentBranchRevision":"`+main+`","stackId":"login","prInfo":{"number":101,"title":"Add a session store","state":"OPEN","url":"https://github.com/acme/shop/pull/101","isDraft":false,"base":"main"}}`)
	r.blobRef("refs/stackit/metadata/auth/login", `{"parentBranchName":"auth/session","parentBranchRevision":"`+session+`","stackId":"login","prInfo":{"number":102,"title":"Login form with rate limits","state":"OPEN","url":"https://github.com/acme/shop/pull/102","isDraft":true,"base":"auth/session"}}`)
	r.blobRef("refs/stackit/metadata/auth/logout", `{"parentBranchName":"auth/login","parentBranchRevision":"`+login+`","stackId":"login"}`)
	r.blobRef("refs/stackit/stacks/login", `{"id":"login","title":"Login flow","description":"Sessions, the login form and sign-out, reviewed bottom-up."}`)
	r.git("checkout", "-q", "auth/login")
	return r
}

// The hostile fixture's payloads: each would set window.__pwned or open a
// dialog if it ran.
const (
	hostileImg    = "x<img/src='x'/onerror=window.__pwned=1>"
	hostileSVG    = "<svg/onload=alert(1)>"
	hostileScript = "<script>window.__pwned=2</script>"
	hostileOnerr  = `<img src=x onerror="window.__pwned=3">`
	hostileTitle  = "<img src=x onerror=window.__pwned=4><b>Fix</b> \u202ethings"
	hostileStack  = "<iframe src=javascript:window.__pwned=6></iframe>"
	hostilePath   = "docs/<img src=x onerror=window.__pwned=7>.md"
	hostileLine   = "<script>window.__pwned=8</script>"
)

// hostileFixture is a working repository whose names, subjects and
// metadata carry HTML and script: a branch named like an img tag with an
// onerror handler (stackit metadata with a PR whose title holds HTML and a
// bidi override and whose URL is javascript:, in a stack titled with an
// iframe), a branch named like an svg with onload (a PR with a data: URL),
// commit subjects with script and img tags, and a file whose path and
// lines hold more.
func hostileFixture(t testing.TB) *teamRepo {
	r := newTeamRepo(t)
	for _, name := range []string{hostileImg, hostileSVG} {
		if out, err := exec.Command("git", "check-ref-format", "--branch", name).CombinedOutput(); err != nil {
			t.Fatalf("git refuses the branch name %q: %v %s", name, err, out)
		}
	}
	r.commit(grace, 5*time.Hour, "Initial commit", map[string]string{"README.md": "hello\n"})
	main := r.git("rev-parse", "HEAD")
	r.git("checkout", "-q", "-b", hostileImg)
	r.commit(ada, 4*time.Hour, hostileScript, map[string]string{hostilePath: hostileLine + "\n"})
	r.commit(ada, 3*time.Hour, hostileOnerr, map[string]string{"README.md": "hello\n" + hostileOnerr + "\n"})
	tip := r.git("rev-parse", "HEAD")
	r.git("checkout", "-q", "-b", hostileSVG)
	r.commit(alan, 2*time.Hour, "<b>bold</b> &amp; <i>entities</i>", map[string]string{"b.txt": "b\n"})
	meta := func(parent, rev, pr string) string {
		b, _ := json.Marshal(map[string]any{"parentBranchName": parent, "parentBranchRevision": rev, "stackId": "evil", "prInfo": json.RawMessage(pr)})
		return string(b)
	}
	pr := func(n int, title, u string) string {
		b, _ := json.Marshal(map[string]any{"number": n, "title": title, "state": "OPEN", "url": u, "isDraft": false})
		return string(b)
	}
	r.blobRef("refs/stackit/metadata/"+hostileImg, meta("main", main, pr(66, hostileTitle, "javascript:window.__pwned=5")))
	r.blobRef("refs/stackit/metadata/"+hostileSVG, meta(hostileImg, tip, pr(67, "<script>alert(1)</script>", "data:text/html,<script>alert(1)</script>")))
	stack, _ := json.Marshal(map[string]string{"id": "evil", "title": hostileStack, "description": "<a href=javascript:alert(1)>click</a>"})
	r.blobRef("refs/stackit/stacks/evil", string(stack))
	r.git("checkout", "-q", "main")
	return r
}

// screenshotDir is where the screenshots go: STACKD_SCREENSHOTS (a
// relative path is taken from the repository's root, e.g.
// docs/screenshots), else a new directory under os.TempDir (kept, and
// logged).
func screenshotDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("STACKD_SCREENSHOTS"); d != "" {
		if !filepath.IsAbs(d) {
			d = filepath.Join("..", d) // the tests run in impl/
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d, err := os.MkdirTemp("", "stackd-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s (set STACKD_SCREENSHOTS to choose)", d)
	return d
}

// TestDashboardEndToEnd drives the dashboard in Chromium against real
// servers. Each subtest says what it asserts; every one of them ends with
// no console error, no CSP violation, no dialog, no payload run and no
// request to another origin (e2eTab.clean).
func TestDashboardEndToEnd(t *testing.T) {
	browser := startBrowser(t) // first: skips at once without chromium
	shots := screenshotDir(t)

	work := dashboardFixture(t)
	up := newUpstream(t, "acme/upstream.git")
	cfg := mirrorConfig(t)
	cfg.Cwd, cfg.CwdExplicit = work.Dir, true
	s := startServer(t, cfg, impl.Options{})
	if r := onboard(t, s, up.url); r.Id != "upstream" {
		t.Fatalf("onboarded %+v", r)
	}
	tab := newTab(t, browser, s.srv.URL)

	// pages: every page shows the fixture, reached by the app's own links
	// (History API, no reload) from a first load of /.
	t.Run("pages", func(t *testing.T) {
		tab.t = t
		e2ePages(t, tab)
	})
	if t.Failed() {
		return
	}
	t.Run("live commit", func(t *testing.T) {
		tab.t = t
		e2eLiveCommit(t, tab, work)
	})
	t.Run("sync button", func(t *testing.T) {
		tab.t = t
		e2eSyncButton(t, tab, up)
	})
	// The screenshots come last, with a history of a few runs: the first
	// read, the watcher's after the commit, and a manual sync.
	syncOK(t, s, "local")
	t.Run("screenshots", func(t *testing.T) {
		tab.t = t
		e2eScreenshots(t, tab, shots)
	})
	// The main tab's event stream ends before its server does (restart).
	tab.t = t
	tab.do("leave the page", chromedp.Navigate("about:blank"))
	t.Run("hostile fixture", func(t *testing.T) {
		e2eHostile(t, browser)
	})
	t.Run("oidc sign-in", func(t *testing.T) {
		e2eSignIn(t, browser)
	})
	t.Run("read-only", func(t *testing.T) {
		// The same data directory read-only: the onboarded mirror
		// (origin api) is restored, and nothing may change it.
		ro := cfg
		ro.ReadOnly = true
		rs := restart(t, s, ro, impl.Options{})
		e2eReadOnly(t, newTab(t, browser, rs.srv.URL))
	})
}

// e2ePages: / lists both repositories with kind, trunk, the server's
// counts, Remove only for the onboarded mirror, and the add form; a
// repository shows trunk with its commits, both stacks as trees with
// their titles, statuses and branch cards (HEAD, restack, parent sources,
// PR links, drafts), live updates and the Sync button; a branch shows its
// parent, child, commits and, on demand, its diff with removed and added
// lines; the sync history shows the first read.
func e2ePages(t *testing.T, tab *e2eTab) {
	tab.visit("/", `__e2e.row("local") && __e2e.row("upstream")`)
	// Marks the document: the app's links below must not reload it.
	tab.do("mark the document", chromedp.Evaluate[chromedp.Void](`window.__firstDocument = true`))
	type row struct {
		Kind, Trunk, Stacks, Branches, Restack string
		Remove                                 bool
	}
	rowOf := func(id string) row {
		return eval[row](tab, `(() => { const r = __e2e.row(`+jsString(id)+`); return {
			Kind: __e2e.text("repo-kind", r), Trunk: __e2e.text("repo-trunk", r),
			Stacks: __e2e.text("count-stacks", r), Branches: __e2e.text("count-branches", r), Restack: __e2e.text("count-restack", r),
			Remove: __e2e.one("remove-repo", r) !== null }; })()`)
	}
	if got, want := rowOf("local"), (row{"working repository", "main", "2 stacks", "5 branches", "1 needs restack", false}); got != want {
		t.Errorf("row local: %+v, want %+v", got, want)
	}
	if got, want := rowOf("upstream"), (row{"mirror", "main", "1 stack", "3 branches", "0 need restack", true}); got != want {
		t.Errorf("row upstream: %+v, want %+v", got, want)
	}
	if !eval[bool](tab, `__e2e.one("add-repo") !== null && __e2e.one("readonly-badge") === null`) {
		t.Error("the local posture shows no add form, or a read-only badge")
	}

	// The repository, by its link.
	tab.click("open local", `__e2e.one("repo-link", __e2e.row("local"))`)
	tab.wait("the stacks", `location.pathname === "/r/local" && __e2e.one("stack-list")?.dataset.ready === "true" && __e2e.one("live-indicator")?.dataset.state === "live"`)
	type stack struct {
		Root, Title, Status string
		Branches            []string
	}
	stacks := eval[[]stack](tab, `__e2e.all("stack").map(s => ({Root: s.dataset.root, Title: __e2e.text("stack-title", s), Status: s.dataset.status,
		Branches: __e2e.all("branch-card", s).map(c => c.dataset.branch)}))`)
	if len(stacks) != 2 || stacks[0].Title != "Login flow" || strings.Join(stacks[0].Branches, ",") != "auth/session,auth/login,auth/logout" ||
		stacks[1].Root != "search/index" || strings.Join(stacks[1].Branches, ",") != "search/index,search/api" {
		t.Errorf("stacks %+v", stacks)
	}
	type card struct {
		Head, Restack            bool
		Source, PR, PRHref       string
		Draft                    bool
		Subject, Author, Commits string
	}
	cardOf := func(name string) card {
		return eval[card](tab, `(() => { const c = __e2e.card(`+jsString(name)+`); const pr = __e2e.one("pr-link", c); return {
			Head: __e2e.one("head-marker", c) !== null, Restack: __e2e.one("needs-restack", c) !== null,
			Source: __e2e.text("parent-source", c), PR: pr ? pr.textContent : (__e2e.text("pr-number", c) || ""), PRHref: pr ? pr.href : "",
			Draft: __e2e.one("pr-draft", c) !== null, Subject: __e2e.text("commit-subject", c), Author: __e2e.text("commit-author", c),
			Commits: __e2e.text("commit-count", c) }; })()`)
	}
	for name, want := range map[string]card{
		"auth/session": {Source: "stackit", PR: "#101", PRHref: "https://github.com/acme/shop/pull/101", Subject: "Expire sessions after 12 hours", Author: "Ada Lovelace", Commits: "2 commits"},
		"auth/login":   {Head: true, Source: "stackit", PR: "#102", PRHref: "https://github.com/acme/shop/pull/102", Draft: true, Subject: "Rate-limit failed logins", Author: "Grace Hopper", Commits: "2 commits"},
		"auth/logout":  {Source: "stackit", Subject: "Sign out everywhere", Author: "Alan Turing", Commits: "1 commit"},
		"search/index": {Restack: true, Source: "ancestry", Subject: "Index products by name", Author: "Grace Hopper", Commits: "1 commit"},
		"search/api":   {Source: "Graphite", PR: "#98", PRHref: "https://github.com/acme/shop/pull/98", Subject: "Add the search endpoint", Author: "Alan Turing", Commits: "1 commit"},
	} {
		if got := cardOf(name); got != want {
			t.Errorf("card %s: %+v, want %+v", name, got, want)
		}
	}
	if got := eval[[]string](tab, `[__e2e.text("trunk-name"), __e2e.text("current-branch"), String(__e2e.all("merged-commit").length), String(__e2e.one("sync-button") !== null)]`); strings.Join(got, ",") != "main,auth/login,3,true" {
		t.Errorf("trunk, HEAD, merged commits, sync button: %q", got)
	}

	// A branch, by its card.
	tab.click("open auth/login", `__e2e.one("branch-name", __e2e.card("auth/login"))`)
	tab.wait("the branch", `location.pathname === "/r/local/b/auth/login" && __e2e.all("commit").length === 2`)
	if got := eval[[]string](tab, `[__e2e.text("branch-title"), __e2e.text("parent-link"), __e2e.texts("child-link").join(","), __e2e.texts("commit-subject").join(" | "), __e2e.text("pr-title")]`); strings.Join(got, "\n") != "auth/loginHEAD\nauth/session\nauth/logout\nRate-limit failed logins | Add the login form\nLogin form with rate limits" {
		t.Errorf("branch page: %q", got)
	}
	tab.click("show the diff", `__e2e.one("load-diff")`)
	tab.wait("the diff", `__e2e.all("diff-file").length === 4`)
	type diffFile struct {
		Path       string
		Add, Del   []string
		Stats      string
		LoadHidden bool
	}
	files := eval[[]diffFile](tab, `__e2e.all("diff-file").map(f => ({Path: f.dataset.path,
		Add: [...f.querySelectorAll("tr.line.add td.code")].map(td => td.textContent),
		Del: [...f.querySelectorAll("tr.line.del td.code")].map(td => td.textContent),
		Stats: __e2e.text("diff-stats"), LoadHidden: __e2e.one("load-diff").hidden}))`)
	byPath := map[string]diffFile{}
	for _, f := range files {
		byPath[f.Path] = f
	}
	sess := byPath["auth/session.go"]
	if !containsLine(sess.Del, "-\tExpires time.Time") || !containsLine(sess.Add, "+\tRemember bool") ||
		!containsLine(sess.Del, "-\treturn now.Before(s.Expires)") || !containsLine(sess.Add, "+\treturn !now.After(s.Expires)") {
		t.Errorf("auth/session.go diff: removed %q, added %q", sess.Del, sess.Add)
	}
	if f := byPath["README.md"]; !containsLine(f.Del, "-The shop's web server.") || !containsLine(f.Add, "+## Sign-in") {
		t.Errorf("README.md diff: removed %q, added %q", f.Del, f.Add)
	}
	if f := byPath["auth/login.go"]; len(f.Add) != 6 || len(f.Del) != 0 || !f.LoadHidden || !strings.HasPrefix(f.Stats, "4 files changed") {
		t.Errorf("auth/login.go: %+v (files %v)", f, files)
	}

	// The history, by the repository's link.
	tab.click("back to local", `[...__e2e.one("breadcrumb").querySelectorAll("a")].find(a => a.textContent === "local")`)
	tab.click("open the history", `location.pathname === "/r/local" && __e2e.one("history-link")`)
	tab.wait("the history", `location.pathname === "/r/local/syncs" && __e2e.all("sync-row").length > 0 && __e2e.one("history-end") !== null`)
	if got := eval[[]string](tab, `(() => { const r = __e2e.all("sync-row").at(-1); return [r.dataset.state, __e2e.text("sync-trigger", r), __e2e.text("sync-outcome", r)]; })()`); strings.Join(got, ",") != "succeeded,onboard,succeeded" {
		t.Errorf("the first sync: %q", got)
	}
	if !eval[bool](tab, `window.__firstDocument === true`) {
		t.Error("following the app's links reloaded the page")
	}
	// A deep link, loaded as such, and the app's own not-found.
	tab.visit(branchPath("local", "search/api"), `__e2e.text("branch-title") === "search/api" && __e2e.text("parent-link") === "search/index"`)
	tab.visit("/no/such/page", `__e2e.one("not-found") !== null`)
	tab.clean("pages")
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

// e2eScreenshots writes a screenshot of every page (repositories,
// repository, branch with its diff, sync history) in the light and the
// dark theme (prefers-color-scheme), on a desktop (1280×800) and a phone
// (390×844, mobile): <page>-<device>-<theme>.png.
func e2eScreenshots(t *testing.T, tab *e2eTab, dir string) {
	pages := []struct {
		name, path, ready, then, after string
	}{
		{"repositories", "/", `__e2e.all("repo-row").length === 2`, "", ""},
		{"repository", "/r/local", `__e2e.one("stack-list")?.dataset.ready === "true" && __e2e.one("live-indicator")?.dataset.state === "live"`, "", ""},
		{"branch", branchPath("local", "auth/login"), `__e2e.one("load-diff") !== null`, `__e2e.one("load-diff")`, `__e2e.all("diff-file").length >= 3`},
		{"history", "/r/local/syncs", `__e2e.one("history-end") !== null`, `document.querySelector('[data-testid="sync-rows"] details summary')`, `document.querySelector('[data-testid="sync-rows"] details').open && __e2e.one("ref-link") !== null`},
	}
	devices := []struct {
		name          string
		width, height int64
		opts          []chromedp.EmulateViewportOption
	}{
		{"desktop", 1280, 800, nil},
		{"phone", 390, 844, []chromedp.EmulateViewportOption{chromedp.EmulateMobile, chromedp.EmulateTouch}},
	}
	var written []string
	for _, d := range devices {
		tab.do("emulate "+d.name, chromedp.EmulateViewport(d.width, d.height, d.opts...))
		for _, theme := range []string{"light", "dark"} {
			if _, err := chromedp.Call(tab.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: theme}},
			}); err != nil {
				t.Fatal(err)
			}
			for _, p := range pages {
				tab.visit(p.path, p.ready+` && matchMedia("(prefers-color-scheme: `+theme+`)").matches`)
				if p.then != "" {
					tab.click(p.name+": show", p.then)
					tab.wait(p.name+": shown", p.after)
				}
				// The width the page lays out at is the device's: no
				// horizontal scrolling on a phone.
				if w := eval[int](tab, "document.documentElement.scrollWidth"); w > int(d.width) {
					t.Errorf("%s on a %s: the page is %d px wide", p.name, d.name, w)
				}
				png, err := chromedp.Run(tab.ctx, chromedp.CaptureScreenshot())
				if err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("%s-%s-%s.png", p.name, d.name, theme)
				if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
					t.Fatal(err)
				}
				written = append(written, name)
			}
		}
	}
	tab.do("reset the emulation", chromedp.EmulateReset())
	if _, err := chromedp.Call(tab.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d screenshots in %s", len(written), dir)
	tab.clean("screenshots")
}

// e2eLiveCommit: a commit in the working repository reaches an open
// repository page without a reload (the watcher, then view_updated) within
// 2 s of the commit: the checked-out branch's card shows it, and the list
// shows a newer view version.
func e2eLiveCommit(t *testing.T, tab *e2eTab, work *teamRepo) {
	tab.visit("/r/local", `__e2e.one("stack-list")?.dataset.ready === "true" && __e2e.one("live-indicator")?.dataset.state === "live"`)
	tab.do("mark the document", chromedp.Evaluate[chromedp.Void](`window.__sameDocument = true`))
	before := eval[string](tab, `__e2e.one("stack-list").dataset.version`)
	const subject = "Remember the user for 30 days"
	start := time.Now()
	work.commit(ada, 0, subject, map[string]string{"auth/remember.go": "package auth\n\n// RememberCookie names the cookie of a remembered session.\nconst RememberCookie = \"remember\"\n"})
	tab.wait("the commit on the page", `__e2e.text("commit-subject", __e2e.card("auth/login")) === `+jsString(subject))
	took := time.Since(start)
	t.Logf("a commit reached the page in %v", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the commit took %v to reach the page, want at most 2 s", took)
	}
	if got := eval[[]any](tab, `[window.__sameDocument === true, __e2e.one("stack-list").dataset.version, __e2e.text("commit-count", __e2e.card("auth/login"))]`); got[0] != true || got[1] == before || got[2] != "3 commits" {
		t.Errorf("after the commit: same document, version (was %s), commits: %v", before, got)
	}
	tab.clean("live commit")
}

// e2eSyncButton: on the onboarded mirror's page, after a push upstream,
// the Sync button runs a sync whose result lists the updated branch (a link
// to it) and the page shows the branch's new tip; the branch page has it
// as its tip and newest commit.
func e2eSyncButton(t *testing.T, tab *e2eTab, up *upstream) {
	tab.visit("/r/upstream", `__e2e.one("stack-list")?.dataset.ready === "true" && __e2e.one("live-indicator")?.dataset.state === "live" && __e2e.one("sync-button") !== null`)
	if got := eval[string](tab, `__e2e.text("commit-subject", __e2e.card("c"))`); got != "c1" {
		t.Fatalf("c's newest commit before the push: %q", got)
	}
	up.work.Git("checkout", "-q", "c")
	tip := up.work.Commit("c2 pushed upstream", map[string]string{"c.txt": "c2\n"})
	up.push("c")
	tab.click("sync", `__e2e.one("sync-button")`)
	tab.wait("the sync's result", `["succeeded", "failed", "error"].includes(__e2e.one("sync-result")?.dataset.state)`)
	type result struct {
		State, Summary string
		Updated        []string
		Card           string
	}
	// The card follows from the view_updated event: wait for it too.
	tab.wait("the new tip on the card", `__e2e.text("commit-subject", __e2e.card("c")) === "c2 pushed upstream"`)
	got := eval[result](tab, `({State: __e2e.one("sync-result").dataset.state, Summary: __e2e.text("sync-summary"),
		Updated: __e2e.all("ref-link", __e2e.one("refs-updated") || document.createElement("div")).map(a => a.textContent),
		Card: __e2e.text("commit-subject", __e2e.card("c"))})`)
	if got.State != "succeeded" || !strings.HasPrefix(got.Summary, "Synced") || strings.Join(got.Updated, ",") != "c" {
		t.Fatalf("sync result %+v", got)
	}
	tab.click("open the updated branch", `__e2e.one("ref-link", __e2e.one("refs-updated"))`)
	tab.wait("its page", `location.pathname === "/r/upstream/b/c" && __e2e.all("commit").length > 0`)
	if got := eval[[]string](tab, `[__e2e.all("copy-sha")[0]?.dataset.sha, __e2e.text("commit-subject")]`); got[0] != tip || got[1] != "c2 pushed upstream" {
		t.Errorf("branch c: tip %q, newest commit %q; want %s", got[0], got[1], tip)
	}
	tab.clean("sync button")
}

// e2eHostile: the hostile fixture stays inert on every page. Branch names,
// commit subjects, PR titles, a stack title and a diff carrying HTML and
// script show as their literal text; no element comes of them; the
// javascript: and data: PR URLs are not links (the PR number is shown as
// text); nothing runs (no dialog, no write to window.__pwned), and the CSP
// records no violation (which an injected handler would cause).
func e2eHostile(t *testing.T, browser context.Context) {
	s := startServer(t, baseConfig(t, hostileFixture(t).Dir), impl.Options{})
	tab := newTab(t, browser, s.srv.URL)
	const inert = `document.querySelectorAll("main img, main script, main iframe, main svg, main b, main i, [onerror], [onload]").length === 0`

	tab.visit("/r/local", `__e2e.one("stack-list")?.dataset.ready === "true"`)
	type card struct {
		Name, PR, Title, Subject string
		Link                     bool
	}
	cardOf := func(name string) card {
		return eval[card](tab, `(() => { const c = __e2e.card(`+jsString(name)+`); return c && {Name: __e2e.text("branch-name", c),
			PR: __e2e.text("pr-number", c) || "", Title: __e2e.text("pr-title", c) || "", Subject: __e2e.text("commit-subject", c),
			Link: __e2e.one("pr-link", c) !== null || c.querySelector("a[href^=javascript], a[href^=data]") !== null}; })()`)
	}
	if got, want := cardOf(hostileImg), (card{hostileImg, "#66", strings.ReplaceAll(hostileTitle, "\u202e", `\u202e`), hostileOnerr, false}); got != want {
		t.Errorf("card of the img branch:\n%+v\nwant\n%+v", got, want)
	}
	if got, want := cardOf(hostileSVG), (card{hostileSVG, "#67", "<script>alert(1)</script>", "<b>bold</b> &amp; <i>entities</i>", false}); got != want {
		t.Errorf("card of the svg branch:\n%+v\nwant\n%+v", got, want)
	}
	if got := eval[[]string](tab, `[__e2e.text("stack-title"), document.querySelector(".stack-desc")?.textContent]`); got[0] != hostileStack || got[1] != "<a href=javascript:alert(1)>click</a>" {
		t.Errorf("stack title and description: %q", got)
	}
	if !eval[bool](tab, inert) {
		t.Errorf("elements came of the data: %s", eval[string](tab, `document.querySelector("main").innerHTML.slice(0, 2000)`))
	}

	// Each branch's page, by its link (the names route as they are).
	tab.click("open the img branch", `__e2e.one("branch-name", __e2e.card(`+jsString(hostileImg)+`))`)
	tab.wait("its page", `__e2e.all("commit").length === 2`)
	if got := eval[[]string](tab, `[decodeURIComponent(location.pathname), __e2e.text("branch-title"), __e2e.texts("commit-subject").join("\n"), document.title]`); got[0] != "/r/local/b/"+hostileImg ||
		got[1] != hostileImg || got[2] != hostileOnerr+"\n"+hostileScript || !strings.HasPrefix(got[3], hostileImg) {
		t.Errorf("the img branch's page: %q", got)
	}
	tab.click("show the diff", `__e2e.one("load-diff")`)
	tab.wait("the diff", `__e2e.all("diff-file").length === 2`)
	if got := eval[[]string](tab, `[__e2e.texts("diff-path").join("\n"), [...document.querySelectorAll("tr.line.add td.code")].map(td => td.textContent).join("\n")]`); !strings.Contains(got[0], hostilePath) ||
		!strings.Contains(got[1], "+"+hostileLine) || !strings.Contains(got[1], "+"+hostileOnerr) {
		t.Errorf("the diff: paths %q, added lines %q", got[0], got[1])
	}
	if !eval[bool](tab, inert) {
		t.Error("elements came of the branch page's data")
	}
	tab.visit(branchPath("local", hostileSVG), `__e2e.text("branch-title") === `+jsString(hostileSVG)+` && __e2e.text("parent-link") === `+jsString(hostileImg))
	if !eval[bool](tab, inert+` && document.querySelector("a[href^=javascript], a[href^=data]") === null`) {
		t.Error("elements or script links came of the svg branch's page")
	}
	tab.visit("/", `__e2e.row("local") !== null`)
	tab.clean("hostile fixture")
}

// e2eSignIn: on a private OIDC server, a deep link opens the sign-in page
// (the app asks nothing of the API that would answer 401); signing in goes
// through the provider (mockoidc over HTTP) and lands back on the page
// asked for, which then shows the branch, the user and Sign out; the
// signed-in user may onboard (the add form), and signing out ends the
// session.
func e2eSignIn(t *testing.T, browser context.Context) {
	idp := startIDP(t)
	s := startServer(t, oidcConfig(t, idp, stackRepo(t).Dir), impl.Options{})
	ip, err := url.Parse(idp.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	tab := newTab(t, browser, s.srv.URL, ip.Scheme+"://"+ip.Host)

	tab.visit("/r/local/b/b", `__e2e.one("signin-page") !== null`)
	tab.clean("the sign-in page")
	tab.clickAway("sign in", `__e2e.one("signin")`)
	tab.wait("back on the branch", `location.pathname === "/r/local/b/b" && __e2e.texts("commit-subject").join(",") === "b2,b1"`)
	if got := eval[[]string](tab, `[__e2e.text("branch-title"), __e2e.text("user"), String(__e2e.one("signout") !== null), String(__e2e.one("signin-link") !== null)]`); strings.Join(got, ",") != "bHEAD,jane.doe@example.com,true,false" {
		t.Errorf("signed in: %q", got)
	}
	tab.click("to the repositories", `__e2e.one("brand")`)
	tab.wait("the repositories", `location.pathname === "/" && __e2e.row("local") !== null`)
	if !eval[bool](tab, `__e2e.one("add-repo") !== null`) {
		t.Error("a signed-in user is not offered onboarding")
	}
	tab.clickAway("sign out", `__e2e.one("signout")`)
	tab.wait("signed out", `location.pathname === "/" && __e2e.one("signin-page") !== null && __e2e.one("signout") === null`)
	tab.clean("oidc sign-in")
}

// e2eReadOnly: a read-only server shows the read-only badge and its data,
// and none of the mutating controls: no add form, no Remove (even for the
// onboarded mirror), no Sync button.
func e2eReadOnly(t *testing.T, tab *e2eTab) {
	tab.visit("/", `__e2e.row("local") && __e2e.row("upstream") && __e2e.one("readonly-badge") !== null`)
	if got := eval[[]int](tab, `[__e2e.all("add-repo").length, __e2e.all("add-repo-form").length, __e2e.all("remove-repo").length, __e2e.all("count-stacks").length]`); fmt.Sprint(got) != "[0 0 0 2]" {
		t.Errorf("read-only repositories page: add %d, form %d, remove %d, counts %d", got[0], got[1], got[2], got[3])
	}
	for _, id := range []string{"local", "upstream"} {
		tab.visit("/r/"+id, `__e2e.one("stack-list")?.dataset.ready === "true" && __e2e.one("history-link") !== null && __e2e.one("readonly-badge") !== null`)
		if n := eval[int](tab, `__e2e.all("sync-button").length + __e2e.all("sync-result").length`); n != 0 {
			t.Errorf("/r/%s on a read-only server: %d sync controls", id, n)
		}
	}
	tab.clean("read-only")
}

package dashboard_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"golang.org/x/net/html"

	"github.com/stackd/stackd/impl/dashboard"
)

func TestPaths(t *testing.T) {
	for _, tc := range []struct {
		path       string
		app, asset bool
	}{
		{"/", true, false},
		{"/r/local", true, false},
		{"/r/local/", true, false},
		{"/r/local/b/feature/login", true, false},
		{"/r/local/b/a%2Fb", true, false},
		{"/r/local/syncs", true, false},
		{"/nope", true, false},
		{"/favicon.ico", true, false},
		{"/apis", true, false},
		{"/authors/x", true, false},
		{"/docsy", true, false},
		{"/healthzz", true, false},
		{"/openapi", true, false},
		{"/API/v1/repos", true, false}, // the API's paths are case-sensitive
		{"/api", false, false},
		{"/api/", false, false},
		{"/api/v1/repos", false, false},
		{"/api/v2/anything", false, false},
		{"/auth", false, false},
		{"/auth/login", false, false},
		{"/docs", false, false},
		{"/docs/", false, false},
		{"/openapi.yaml", false, false},
		{"/openapi.json", false, false},
		{"/openapi.json/", false, false},
		{"/openapi.xml", false, false},
		{"/healthz", false, false},
		{"/healthz/", false, false},
		{"/readyz", false, false},
		{"/readyz/x", false, false},
		{"/problems", false, false},
		{"/problems/", false, false},
		{"/problems/not-found", false, false},
		{"/problemsx", true, false},
		{"/assets", false, false},
		{"/assets/", false, true},
		{"/assets/app.js", false, true},
		{"/assets/app.0123456789abcdef.js", false, true},
		{"", false, false},
		{"*", false, false},
		{"r/local", false, false},
	} {
		if got := dashboard.IsAppPath(tc.path); got != tc.app {
			t.Errorf("IsAppPath(%q) = %v, want %v", tc.path, got, tc.app)
		}
		if got := dashboard.IsAssetPath(tc.path); got != tc.asset {
			t.Errorf("IsAssetPath(%q) = %v, want %v", tc.path, got, tc.asset)
		}
	}
}

// rawClient does not ask for gzip on its own, nor undo it.
var rawClient = &http.Client{Transport: &http.Transport{DisableCompression: true}}

type answer struct {
	code int
	hdr  http.Header
	body []byte
}

func call(t *testing.T, srv *httptest.Server, method, p string, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+p, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, body}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

// hashedURL computes, independently of the package, the URL an asset of
// the build must have.
func hashedURL(t *testing.T, build fs.FS, name string) (string, []byte) {
	t.Helper()
	body, err := fs.ReadFile(build, name)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	ext := path.Ext(name)
	return "/assets/" + strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:])[:16] + ext, body
}

func checkProblem(t *testing.T, what string, a answer, status int, detail string) {
	t.Helper()
	if a.code != status || a.hdr.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%s: %d %s: %s", what, a.code, a.hdr.Get("Content-Type"), a.body)
	}
	var p struct {
		Type, Detail string
		Status       int
	}
	if err := json.Unmarshal(a.body, &p); err != nil || p.Status != status || !strings.HasPrefix(p.Type, "/problems/") || p.Detail != detail {
		t.Fatalf("%s: problem %+v (%v), want detail %q", what, p, err, detail)
	}
}

// TestServeEmbeddedBuild serves the embedded build over real HTTP: the
// shell on every app path (GET and HEAD, identity and gzip, 304 on its
// ETag), each asset at its content-hashed URL as immutable and by its
// plain name revalidated, 404 problems for an unknown asset and a server
// path, 405 for other methods.
func TestServeEmbeddedBuild(t *testing.T) {
	build := dashboard.Build()
	h, err := dashboard.New(build)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	index, err := fs.ReadFile(build, dashboard.Shell)
	if err != nil {
		t.Fatal(err)
	}
	// The shell as it must be served: each /assets/<name> reference of
	// index.html replaced by the asset's hashed URL, computed here.
	refs := regexp.MustCompile(`/assets/[A-Za-z0-9._/-]+`).FindAll(index, -1)
	if len(refs) == 0 {
		t.Fatal("index.html references no asset")
	}
	shell := index
	for _, ref := range refs {
		name := strings.TrimPrefix(string(ref), "/assets/")
		u, _ := hashedURL(t, build, name)
		if got, ok := h.AssetURL(name); !ok || got != u {
			t.Errorf("AssetURL(%s) = %q %v, want %q", name, got, ok, u)
		}
		shell = bytes.ReplaceAll(shell, ref, []byte(u))
	}
	if bytes.Equal(shell, index) || !bytes.Contains(shell, []byte(`src="/assets/app.`)) {
		t.Fatalf("the expected shell references no hashed app.js:\n%s", shell)
	}

	var shellTag string
	for _, p := range []string{"/", "/r/local", "/r/local/", "/r/x/b/feature/login", "/r/x/b/a%2Fb", "/r/x/syncs", "/no/such/page", "/favicon.ico"} {
		a := call(t, srv, "GET", p)
		if a.code != 200 || !bytes.Equal(a.body, shell) {
			t.Fatalf("GET %s: %d\n%s\nwant\n%s", p, a.code, a.body, shell)
		}
		for k, want := range map[string]string{
			"Content-Type":     "text/html; charset=utf-8",
			"Cache-Control":    "no-cache",
			"Vary":             "Accept-Encoding",
			"Content-Length":   strconv.Itoa(len(shell)),
			"Content-Encoding": "",
		} {
			if got := a.hdr.Get(k); got != want {
				t.Errorf("GET %s: %s %q, want %q", p, k, got, want)
			}
		}
		if shellTag == "" {
			shellTag = a.hdr.Get("ETag")
		}
		if tag := a.hdr.Get("ETag"); tag == "" || tag != shellTag {
			t.Errorf("GET %s: ETag %q, the shell's is %q", p, tag, shellTag)
		}
		head := call(t, srv, "HEAD", p)
		if head.code != 200 || len(head.body) != 0 || head.hdr.Get("Content-Length") != a.hdr.Get("Content-Length") ||
			head.hdr.Get("ETag") != shellTag || head.hdr.Get("Content-Type") != a.hdr.Get("Content-Type") {
			t.Errorf("HEAD %s: %d %v %q", p, head.code, head.hdr, head.body)
		}
	}
	gz := call(t, srv, "GET", "/r/x", "Accept-Encoding", "gzip, br")
	if gz.code != 200 || gz.hdr.Get("Content-Encoding") != "gzip" || gz.hdr.Get("Vary") != "Accept-Encoding" ||
		gz.hdr.Get("Content-Length") != strconv.Itoa(len(gz.body)) || gz.hdr.Get("ETag") == shellTag ||
		!bytes.Equal(gunzip(t, gz.body), shell) {
		t.Fatalf("gzipped shell: %d %v", gz.code, gz.hdr)
	}
	if a := call(t, srv, "GET", "/r/x", "If-None-Match", shellTag); a.code != 304 || len(a.body) != 0 || a.hdr.Get("ETag") != shellTag {
		t.Errorf("shell revalidated: %d %v", a.code, a.hdr)
	}
	if a := call(t, srv, "GET", "/r/x", "If-None-Match", shellTag, "Accept-Encoding", "gzip"); a.code != 200 {
		t.Errorf("the identity ETag revalidated the gzipped shell: %d", a.code)
	}
	if a := call(t, srv, "GET", "/r/x", "If-None-Match", gz.hdr.Get("ETag"), "Accept-Encoding", "gzip"); a.code != 304 ||
		a.hdr.Get("ETag") != gz.hdr.Get("ETag") || a.hdr.Get("Vary") != "Accept-Encoding" || a.hdr.Get("Content-Encoding") != "" || len(a.body) != 0 {
		t.Errorf("gzipped shell revalidated: %d %v", a.code, a.hdr)
	}

	// Every asset of the build, at its hashed URL.
	names := 0
	err = fs.WalkDir(build, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || name == dashboard.Shell {
			return err
		}
		names++
		u, body := hashedURL(t, build, name)
		a := call(t, srv, "GET", u)
		if a.code != 200 || !bytes.Equal(a.body, body) {
			t.Fatalf("GET %s: %d", u, a.code)
		}
		if got := a.hdr.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
			t.Errorf("GET %s: Cache-Control %q", u, got)
		}
		wantType := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}[path.Ext(name)]
		if got := a.hdr.Get("Content-Type"); wantType != "" && got != wantType || got == "" {
			t.Errorf("GET %s: Content-Type %q, want %q", u, got, wantType)
		}
		tag := a.hdr.Get("ETag")
		if !strings.HasPrefix(tag, `"`) || a.hdr.Get("Content-Encoding") != "" || a.hdr.Get("Content-Length") != strconv.Itoa(len(body)) {
			t.Errorf("GET %s: %v", u, a.hdr)
		}
		if c := call(t, srv, "GET", u, "If-None-Match", `"other", `+tag); c.code != 304 {
			t.Errorf("GET %s with its ETag: %d", u, c.code)
		}
		if a.hdr.Get("Vary") == "Accept-Encoding" { // it has a gzipped form
			z := call(t, srv, "GET", u, "Accept-Encoding", "gzip")
			if z.code != 200 || z.hdr.Get("Content-Encoding") != "gzip" || z.hdr.Get("Cache-Control") != a.hdr.Get("Cache-Control") ||
				z.hdr.Get("Content-Type") != a.hdr.Get("Content-Type") || z.hdr.Get("ETag") == tag || len(z.body) >= len(body) ||
				!bytes.Equal(gunzip(t, z.body), body) {
				t.Errorf("GET %s gzipped: %d %v", u, z.code, z.hdr)
			}
			if z := call(t, srv, "GET", u, "Accept-Encoding", "gzip;q=0, br"); z.hdr.Get("Content-Encoding") != "" || !bytes.Equal(z.body, body) {
				t.Errorf("GET %s refusing gzip: %v", u, z.hdr)
			}
		}
		plain := call(t, srv, "GET", "/assets/"+name)
		if plain.code != 200 || !bytes.Equal(plain.body, body) || plain.hdr.Get("Cache-Control") != "no-cache" {
			t.Errorf("GET /assets/%s: %d %v", name, plain.code, plain.hdr)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if names < 2 {
		t.Fatalf("the build has %d assets", names)
	}
	app, _ := hashedURL(t, build, "app.js")
	if a := call(t, srv, "GET", app, "Accept-Encoding", "gzip"); a.hdr.Get("Content-Encoding") != "gzip" {
		t.Errorf("app.js is not served gzipped: %v", a.hdr)
	}

	// Unknown assets, server paths, other methods.
	stale := app[:len(app)-len(".0123456789abcdef.js")] + ".0123456789abcdef.js"
	for _, p := range []string{stale, "/assets/", "/assets/nope.js", "/assets/index.html", "/assets/app.JS", "/assets/../index.html"} {
		checkProblem(t, "GET "+p, call(t, srv, "GET", p), 404, "no such asset: "+p)
	}
	for _, p := range []string{"/api/v1/nope", "/healthz/", "/openapi.xml", "/docs/x", "/auth/x", "/assets"} {
		checkProblem(t, "GET "+p, call(t, srv, "GET", p), 404, "no such route: "+p)
	}
	for _, tc := range []struct{ method, path string }{{"POST", "/"}, {"PUT", "/r/x"}, {"DELETE", app}, {"OPTIONS", "/r/x/syncs"}, {"PATCH", "/assets/nope"}} {
		a := call(t, srv, tc.method, tc.path)
		checkProblem(t, tc.method+" "+tc.path, a, 405, tc.method+" is not allowed on "+tc.path)
		if a.hdr.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q", tc.method, tc.path, a.hdr.Get("Allow"))
		}
	}
}

// TestNewBuilds: the hashing and the shell's rewriting on builds made up
// here (names with several dots, one a prefix of another, a directory);
// and what New refuses.
func TestNewBuilds(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	build := fstest.MapFS{
		"index.html":       file(`<script type="module" src="/assets/app.js"></script><link href="/assets/app.json"><img src="/assets/img/logo.svg"><a href="/assets/app.js?x#y">`),
		"app.js":           file("console.log(1)"),
		"app.json":         file("{}"),
		"app.js.map":       file(`{"version":3}`),
		"img/logo.svg":     file("<svg/>"),
		"nested/deep/x.js": file("x"),
	}
	h, err := dashboard.New(build)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	want := map[string]string{}
	for _, name := range []string{"app.js", "app.json", "app.js.map", "img/logo.svg", "nested/deep/x.js"} {
		u, body := hashedURL(t, build, name)
		want[name] = u
		if got, _ := h.AssetURL(name); got != u {
			t.Errorf("AssetURL(%s) = %q, want %q", name, got, u)
		}
		if a := call(t, srv, "GET", u); a.code != 200 || !bytes.Equal(a.body, body) {
			t.Errorf("GET %s: %d %s", u, a.code, a.body)
		}
	}
	if !strings.HasSuffix(want["app.js.map"], ".map") || !strings.HasPrefix(want["app.js.map"], "/assets/app.js.") {
		t.Errorf("app.js.map at %s", want["app.js.map"])
	}
	shell := call(t, srv, "GET", "/").body
	wantShell := `<script type="module" src="` + want["app.js"] + `"></script><link href="` + want["app.json"] +
		`"><img src="` + want["img/logo.svg"] + `"><a href="` + want["app.js"] + `?x#y">`
	if string(shell) != wantShell {
		t.Errorf("shell\n%s\nwant\n%s", shell, wantShell)
	}

	for _, tc := range []struct {
		name  string
		build fstest.MapFS
		err   string
	}{
		{"no shell", fstest.MapFS{"app.js": file("x")}, "no shell"},
		{"missing asset", fstest.MapFS{"index.html": file(`<script src="/assets/app.js"></script><link href="/assets/gone.css">`), "app.js": file("x")}, "/assets/gone.css"},
		{"web font", fstest.MapFS{"index.html": file(""), "font.woff2": file("x")}, `".woff2"`},
		{"no extension", fstest.MapFS{"index.html": file(""), "LICENSE": file("x")}, `no content type`},
		{"name", fstest.MapFS{"index.html": file(""), "a b.js": file("x")}, `"a b.js"`},
		{"dot name", fstest.MapFS{"index.html": file(""), ".x.js": file("x")}, `".x.js"`},
	} {
		_, err := dashboard.New(tc.build)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: err %v, want one naming %s", tc.name, err, tc.err)
		}
	}
}

// TestEmbeddedShellIsSelfContained reads the committed build: the shell
// loads scripts, styles and icons from /assets/ only, as module scripts,
// with no inline script, style or event handler (the CSP would block
// them), and the stylesheets import nothing and load no font.
func TestEmbeddedShellIsSelfContained(t *testing.T) {
	build := dashboard.Build()
	index, err := fs.ReadFile(build, dashboard.Shell)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(index))
	if err != nil {
		t.Fatal(err)
	}
	scripts := 0
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			attrs := map[string]string{}
			for _, a := range n.Attr {
				attrs[strings.ToLower(a.Key)] = a.Val
				if strings.HasPrefix(strings.ToLower(a.Key), "on") || strings.EqualFold(a.Key, "style") {
					t.Errorf("<%s %s=...>: inline handler or style", n.Data, a.Key)
				}
			}
			for _, k := range []string{"src", "href", "srcset", "action", "poster", "data"} {
				if v, ok := attrs[k]; ok && !strings.HasPrefix(v, "/assets/") && !strings.HasPrefix(v, "/") {
					t.Errorf("<%s %s=%q>: not this origin's /assets/ or path", n.Data, k, v)
				}
				if v := attrs[k]; strings.HasPrefix(v, "//") {
					t.Errorf("<%s %s=%q>: another origin", n.Data, k, v)
				}
			}
			switch n.Data {
			case "script":
				scripts++
				if !strings.HasPrefix(attrs["src"], "/assets/") || n.FirstChild != nil || attrs["type"] != "module" {
					t.Errorf("<script %v>: want a module script from /assets/ with no text", n.Attr)
				}
			case "style":
				t.Error("<style> element: inline style")
			case "link":
				if !strings.HasPrefix(attrs["href"], "/assets/") {
					t.Errorf("<link %v>: not from /assets/", n.Attr)
				}
			case "base", "iframe", "object", "embed":
				t.Errorf("<%s> element", n.Data)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if scripts == 0 {
		t.Error("the shell has no script")
	}
	foreignURL := regexp.MustCompile(`(?i)url\(\s*['"]?\s*(https?:|//)`)
	err = fs.WalkDir(build, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(name) != ".css" {
			return err
		}
		css, err := fs.ReadFile(build, name)
		if err != nil {
			return err
		}
		lower := strings.ToLower(string(css))
		if strings.Contains(lower, "@import") || strings.Contains(lower, "@font-face") || foreignURL.Match(css) {
			t.Errorf("%s imports, loads a font or loads from another origin", name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

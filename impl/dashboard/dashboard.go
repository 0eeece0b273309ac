// Package dashboard serves the web dashboard from the binary: the app shell
// and its assets, built from impl/dashboard/web (TypeScript, `make
// dashboard`) into dist/, which is committed and embedded here, so that
// neither `make run` nor `make test` needs Node.
//
// New reads the build once, at start-up: every file of dist but index.html
// is an asset, served at /assets/<name>.<first 16 hex digits of its
// SHA-256>.<ext> and cached as immutable; index.html is the shell, whose
// /assets/<name> references are rewritten to those URLs and which is
// served, never cached without revalidation, for every app path
// (IsAppPath). Each text file is gzipped once, at start-up, and sent so to
// a client that accepts gzip. Nothing the dashboard loads comes from
// another origin; its Content-Security-Policy (CSP) allows scripts, styles
// and calls of this origin only, and no inline script or style.
package dashboard

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/stackd/stackd/impl/problem"
)

// The build output of impl/dashboard/web (see its package.json), committed.
// Files whose names start with "." or "_" are left out.
//
//go:embed dist
var embedded embed.FS

// Build is the embedded build: the files of dist/, at its root.
func Build() fs.FS {
	sub, err := fs.Sub(embedded, "dist")
	if err != nil { // only for an invalid literal name
		panic(err)
	}
	return sub
}

// CSP is the Content-Security-Policy of the shell: scripts, styles, images
// and calls of this origin only (and data: images), no inline script or
// style, no eval, no fonts, no plugins, no <base>, forms posted here only,
// never framed.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Shell is the app shell's file name in the build.
const Shell = "index.html"

// Cache-Control of the hashed assets (their URL changes with their
// content) and of everything else (the shell, an asset by its plain name):
// stored, but revalidated (ETag) before each use.
const (
	CacheImmutable  = "public, max-age=31536000, immutable"
	CacheRevalidate = "no-cache"
)

// hashLen is how many hex digits of an asset's SHA-256 its URL carries.
const hashLen = 16

// contentTypes are the types of the files a build may hold, by extension;
// New refuses any other (a web font, say: the CSP allows none).
var contentTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".mjs":         "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".map":         "application/json",
	".json":        "application/json",
	".webmanifest": "application/manifest+json",
	".txt":         "text/plain; charset=utf-8",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".webp":        "image/webp",
	".ico":         "image/x-icon",
}

// compressible reports whether a type is worth gzipping (text; the
// images but SVG are compressed already).
func compressible(ctype string) bool {
	return strings.HasPrefix(ctype, "text/") || strings.HasPrefix(ctype, "application/") || ctype == "image/svg+xml"
}

// assetName is what an asset's path inside the build may be: it goes into
// a URL and the shell unescaped.
var assetName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$`)

// assetRef is a reference to an asset in the shell: /assets/<name>.
var assetRef = regexp.MustCompile(`/assets/([A-Za-z0-9][A-Za-z0-9._/-]*)`)

// file is one response, prepared at start-up.
type file struct {
	ctype  string
	cache  string
	body   []byte
	etag   string // quoted
	gz     []byte // nil when not worth it
	gzETag string
}

// Handler serves the dashboard (ServeHTTP).
type Handler struct {
	shell  *file
	assets map[string]*file  // by URL path: hashed, and plain
	urls   map[string]string // asset name (app.js) → hashed URL path
}

// New prepares the dashboard from a build (Build, or another fs.FS with
// the same layout): it hashes and gzips each asset and rewrites the
// shell's references. It fails when the build has no shell, when an
// asset's name or type is not one a build may have, or when the shell
// references an asset the build does not have.
func New(build fs.FS) (*Handler, error) {
	h := &Handler{assets: map[string]*file{}, urls: map[string]string{}}
	err := fs.WalkDir(build, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || name == Shell {
			return nil
		}
		if !assetName.MatchString(name) {
			return fmt.Errorf("dashboard: asset name %q: not [A-Za-z0-9._-] segments", name)
		}
		ext := path.Ext(name)
		ctype, ok := contentTypes[ext]
		if !ok {
			return fmt.Errorf("dashboard: asset %s: no content type for %q", name, ext)
		}
		body, err := fs.ReadFile(build, name)
		if err != nil {
			return fmt.Errorf("dashboard: %w", err)
		}
		sum := sha256.Sum256(body)
		hash := hex.EncodeToString(sum[:])[:hashLen]
		hashed := AssetPrefix + strings.TrimSuffix(name, ext) + "." + hash + ext
		f, err := prepare(ctype, CacheImmutable, body)
		if err != nil {
			return err
		}
		h.assets[hashed] = f
		// By its plain name too, revalidated: for a reference the shell
		// rewriting does not reach (a url() in a stylesheet, a source map).
		plain := *f
		plain.cache = CacheRevalidate
		h.assets[AssetPrefix+name] = &plain
		h.urls[name] = hashed
		return nil
	})
	if err != nil {
		return nil, err
	}
	page, err := fs.ReadFile(build, Shell)
	if err != nil {
		return nil, fmt.Errorf("dashboard: the build has no shell: %w", err)
	}
	var missing []string
	page = assetRef.ReplaceAllFunc(page, func(ref []byte) []byte {
		hashed, ok := h.urls[string(ref[len(AssetPrefix):])]
		if !ok {
			missing = append(missing, string(ref))
			return ref
		}
		return []byte(hashed)
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("dashboard: %s references %s, which the build does not have", Shell, strings.Join(missing, ", "))
	}
	if h.shell, err = prepare(contentTypes[".html"], CacheRevalidate, page); err != nil {
		return nil, err
	}
	return h, nil
}

// prepare computes a response's ETag and, when worth it, its gzipped form.
func prepare(ctype, cache string, body []byte) (*file, error) {
	sum := sha256.Sum256(body)
	tag := hex.EncodeToString(sum[:])[:hashLen]
	f := &file{ctype: ctype, cache: cache, body: body, etag: `"` + tag + `"`}
	if !compressible(ctype) {
		return f, nil
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("dashboard: gzip: %w", err)
	}
	if _, err := zw.Write(body); err != nil {
		return nil, fmt.Errorf("dashboard: gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("dashboard: gzip: %w", err)
	}
	if buf.Len() < len(body) {
		f.gz, f.gzETag = buf.Bytes(), `"`+tag+`-gzip"`
	}
	return f, nil
}

// AssetURL returns the hashed URL path of an asset of the build, by its
// name in the build (app.js).
func (h *Handler) AssetURL(name string) (string, bool) {
	u, ok := h.urls[name]
	return u, ok
}

// ServeHTTP answers GET and HEAD: an asset under AssetPrefix (404 problem
// when the build has none there), the shell on an app path (IsAppPath),
// and a 404 problem on any other path (a server path no other route
// took). Any other method is a 405 problem.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		problem.Write(w, r, http.StatusMethodNotAllowed, problem.MethodNotAllowed,
			fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.EscapedPath()))
		return
	}
	p := r.URL.Path
	switch {
	case IsAssetPath(p):
		f, ok := h.assets[p]
		if !ok {
			problem.Write(w, r, http.StatusNotFound, problem.NotFound, "no such asset: "+r.URL.EscapedPath())
			return
		}
		serve(w, r, f)
	case IsAppPath(p):
		serve(w, r, h.shell)
	default:
		problem.Write(w, r, http.StatusNotFound, problem.NotFound, "no such route: "+r.URL.EscapedPath())
	}
}

// serve writes f, gzipped when it has a gzipped form and the client
// accepts gzip, or 304 when the client's If-None-Match has the ETag of the
// form it would get.
func serve(w http.ResponseWriter, r *http.Request, f *file) {
	h := w.Header()
	body, etag := f.body, f.etag
	if f.gz != nil {
		h.Set("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Values("Accept-Encoding")) {
			body, etag = f.gz, f.gzETag
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("Cache-Control", f.cache)
	h.Set("ETag", etag)
	if noneMatch(r.Header.Values("If-None-Match"), etag) {
		h.Del("Content-Encoding")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", f.ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// acceptsGzip reports whether Accept-Encoding values accept gzip (RFC
// 9110, 12.5.3): gzip or x-gzip with a q above 0, else * with a q above
// 0. A q that does not parse counts as 0.
func acceptsGzip(values []string) bool {
	gz, star := -1.0, -1.0
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(part, ";")
			q := 1.0
			for _, param := range strings.Split(params, ";") {
				name, val, ok := strings.Cut(strings.TrimSpace(param), "=")
				if !ok || !strings.EqualFold(strings.TrimSpace(name), "q") {
					continue
				}
				f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
				if err != nil || f < 0 || f > 1 {
					f = 0
				}
				q = f
			}
			switch strings.ToLower(strings.TrimSpace(coding)) {
			case "gzip", "x-gzip":
				gz = max(gz, q)
			case "*":
				star = max(star, q)
			}
		}
	}
	if gz >= 0 {
		return gz > 0
	}
	return star > 0
}

// noneMatch reports whether If-None-Match values name etag (weak
// comparison, RFC 9110, 13.1.2) or are "*".
func noneMatch(values []string, etag string) bool {
	for _, v := range values {
		for _, tag := range strings.Split(v, ",") {
			tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
			if tag == "*" || tag == etag {
				return true
			}
		}
	}
	return false
}

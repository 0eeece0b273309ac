package httpstack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/stackd/stackd/impl/dashboard"
)

// Content-Security-Policy of everything but Swagger UI and the dashboard's
// shell: the API answers JSON, patches and problems, which need nothing at
// all, and may not be framed (the dashboard's assets, scripts, styles and
// images, need no policy of their own either).
const apiCSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// headerPolicy are the security headers of every response.
type headerPolicy struct {
	hsts    bool   // Strict-Transport-Security (the base URL is https)
	docsCSP string // the Content-Security-Policy of /docs/
}

// securityHeaders sets, before anything else writes, the headers every
// response carries: nosniff, no referrer, no framing (X-Frame-Options and
// frame-ancestors), a Content-Security-Policy (the strict one, Swagger
// UI's under /docs, the dashboard's on its app paths), and HSTS when the
// base URL is https.
func securityHeaders(p headerPolicy) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("X-Frame-Options", "DENY")
			switch path := r.URL.Path; {
			case isDocs(path):
				h.Set("Content-Security-Policy", p.docsCSP)
			case dashboard.IsAppPath(path):
				h.Set("Content-Security-Policy", dashboard.CSP)
			default:
				h.Set("Content-Security-Policy", apiCSP)
			}
			if p.hsts {
				h.Set("Strict-Transport-Security", "max-age=31536000")
			}
			next.ServeHTTP(w, r)
		})
	}
}

// inlineScript and inlineStyle match a <script> or <style> element: its
// attributes and its text.
var (
	inlineScript = regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script>`)
	inlineStyle  = regexp.MustCompile(`(?is)<style\b([^>]*)>(.*?)</style>`)
)

// docsPolicy builds the Content-Security-Policy of Swagger UI: its own
// scripts and styles, the inline <script> and <style> elements of its page
// allowed by their SHA-256 (the page is rendered once here, so the hashes
// follow the embedded swgui version and its settings; nothing else inline
// runs), data: images (its icons), calls to this origin only, and no
// framing.
func docsPolicy(ui http.Handler) (string, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "/docs/", nil)
	if err != nil {
		return "", err
	}
	page := &pageWriter{header: http.Header{}}
	ui.ServeHTTP(page, req)
	if page.status() != http.StatusOK {
		return "", fmt.Errorf("render Swagger UI for its CSP: status %d", page.status())
	}
	text := page.body.String()
	scripts, styles := inlineHashes(inlineScript, text), inlineHashes(inlineStyle, text)
	if scripts == "" {
		return "", fmt.Errorf("render Swagger UI for its CSP: no inline script found")
	}
	return "default-src 'none'; script-src 'self'" + scripts + "; style-src 'self'" + styles +
		"; img-src 'self' data:; font-src 'self' data:; connect-src 'self'" +
		"; frame-ancestors 'none'; base-uri 'none'; form-action 'self'", nil
}

// pageWriter keeps a page rendered in process (docsPolicy).
type pageWriter struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (p *pageWriter) Header() http.Header { return p.header }

func (p *pageWriter) WriteHeader(code int) {
	if p.code == 0 {
		p.code = code
	}
}

func (p *pageWriter) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return p.body.Write(b)
}

func (p *pageWriter) status() int {
	if p.code == 0 {
		return http.StatusOK
	}
	return p.code
}

// inlineHashes returns " 'sha256-…'" for each element re matches in page
// that has no src attribute.
func inlineHashes(re *regexp.Regexp, page string) string {
	var b strings.Builder
	for _, m := range re.FindAllStringSubmatch(page, -1) {
		if strings.Contains(strings.ToLower(m[1]), "src=") {
			continue
		}
		sum := sha256.Sum256([]byte(m[2]))
		b.WriteString(" 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'")
	}
	return b.String()
}

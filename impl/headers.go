package impl

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/problem"
)

// Content-Security-Policy of everything but Swagger UI: the API answers
// JSON, patches and problems, which need nothing at all, and may not be
// framed.
const apiCSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// headerPolicy are the security headers of every response.
type headerPolicy struct {
	hsts    bool   // Strict-Transport-Security (the base URL is https)
	docsCSP string // the Content-Security-Policy of /docs/
}

// securityHeaders sets, before anything else writes, the headers every
// response carries: nosniff, no referrer, no framing (X-Frame-Options and
// frame-ancestors), a Content-Security-Policy (the strict one, or Swagger
// UI's under /docs), and HSTS when the base URL is https.
func securityHeaders(next http.Handler, p headerPolicy) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if isDocs(r.URL.Path) {
			h.Set("Content-Security-Policy", p.docsCSP)
		} else {
			h.Set("Content-Security-Policy", apiCSP)
		}
		if p.hsts {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
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
	rec := httptest.NewRecorder()
	ui.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/docs/", nil))
	if rec.Code != http.StatusOK {
		return "", fmt.Errorf("render Swagger UI for its CSP: status %d", rec.Code)
	}
	page := rec.Body.String()
	scripts, styles := inlineHashes(inlineScript, page), inlineHashes(inlineStyle, page)
	if scripts == "" {
		return "", fmt.Errorf("render Swagger UI for its CSP: no inline script found")
	}
	return "default-src 'none'; script-src 'self'" + scripts + "; style-src 'self'" + styles +
		"; img-src 'self' data:; font-src 'self' data:; connect-src 'self'" +
		"; frame-ancestors 'none'; base-uri 'none'; form-action 'self'", nil
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

// stampProblems is a strict-handler middleware that puts the instance (the
// request's path) and the request id in the problem of a handler's error
// response (handlers build problems with problem.New, without the
// request); problem.Write does the same for the middleware's answers.
func stampProblems(f gen.StrictHandlerFunc, _ string) gen.StrictHandlerFunc {
	return func(ctx context.Context, w http.ResponseWriter, r *http.Request, req any) (any, error) {
		resp, err := f(ctx, w, r, req)
		if err != nil || resp == nil {
			return resp, err
		}
		return withProblem(r, resp), nil
	}
}

var (
	problemType  = reflect.TypeFor[gen.Problem]()
	requestIDIdx = func() []int {
		f, ok := problemType.FieldByName("RequestId")
		if !ok {
			panic("gen.Problem has no RequestId")
		}
		return f.Index
	}()
	// problemPaths caches, per response type, the field index path of its
	// problem's RequestId (nil: the response holds no problem).
	problemPaths sync.Map
)

// withProblem returns resp with its problem stamped from r (instance and
// requestId, problem.Stamp), or resp itself when it holds no problem. Generated error responses embed
// gen.Problem (as a named type of the same structure) directly or as Body.
func withProblem(r *http.Request, resp any) any {
	v := reflect.ValueOf(resp)
	path, ok := problemPaths.Load(v.Type())
	if !ok {
		path = findProblem(v.Type(), nil, 0)
		problemPaths.Store(v.Type(), path)
	}
	idx, _ := path.([]int)
	if idx == nil {
		return resp
	}
	c := reflect.New(v.Type()).Elem()
	c.Set(v)
	p := c.FieldByIndex(idx[:len(idx)-len(requestIDIdx)])
	stamped := problem.Stamp(r, p.Convert(problemType).Interface().(gen.Problem))
	p.Set(reflect.ValueOf(stamped).Convert(p.Type()))
	return c.Interface()
}

// findProblem returns the index path from t to the RequestId of a struct
// of gen.Problem's structure within t (at most three fields deep), or nil.
func findProblem(t reflect.Type, at []int, depth int) []int {
	if t.Kind() != reflect.Struct || depth > 3 {
		return nil
	}
	if t.ConvertibleTo(problemType) {
		return append(append([]int{}, at...), requestIDIdx...)
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if p := findProblem(f.Type, append(append([]int{}, at...), i), depth+1); p != nil {
			return p
		}
	}
	return nil
}

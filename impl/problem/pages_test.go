package problem

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var slugForm = regexp.MustCompile(`^[a-z]+(-[a-z]+)*$`)

// declaredSlugs are the string constants of problem.go that have the form
// of a slug: every problem type the server can send is one of them (the
// other packages name types only through these constants).
func declaredSlugs(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "problem.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			for _, v := range spec.(*ast.ValueSpec).Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				if s, err := strconv.Unquote(lit.Value); err == nil && slugForm.MatchString(s) {
					out = append(out, s)
				}
			}
		}
	}
	if len(out) < 20 {
		t.Fatalf("found only %d slugs in problem.go: %q", len(out), out)
	}
	return out
}

// TestEveryTypeHasAPage: every slug declared in code is in Types, each type
// has exactly one page file (and no file is left without a type), and
// Pages answers each with 200 text/html naming its type URI; unknown slugs
// and paths are 404 problems, other methods 405.
func TestEveryTypeHasAPage(t *testing.T) {
	var listed []string
	for _, ty := range Types {
		listed = append(listed, ty.Slug)
		if http.StatusText(ty.Status) == "" || ty.Title == "" {
			t.Errorf("type %s: status %d, title %q", ty.Slug, ty.Status, ty.Title)
		}
	}
	for _, slug := range declaredSlugs(t) {
		if !slices.Contains(listed, slug) {
			t.Errorf("slug %q is declared in problem.go but not in Types", slug)
		}
	}
	files, err := fs.Glob(pageFiles, "pages/*.html")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(Types) {
		t.Errorf("%d page files for %d types: %q", len(files), len(Types), files)
	}

	h, err := Pages()
	if err != nil {
		t.Fatal(err)
	}
	get := func(method, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec
	}
	index := get("GET", TypePrefix).Body.String()
	for _, ty := range Types {
		rec := get("GET", TypePrefix+ty.Slug)
		body := rec.Body.String()
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("%s: %d %q", ty.Slug, rec.Code, rec.Header().Get("Content-Type"))
			continue
		}
		if !strings.HasPrefix(body, "<!doctype html>") || !strings.Contains(body, "<code>"+TypePrefix+ty.Slug+"</code>") ||
			!strings.Contains(body, "<strong>"+strconv.Itoa(ty.Status)+"</strong>") || !strings.Contains(body, "What to do") {
			t.Errorf("%s: page %s", ty.Slug, body)
		}
		if !strings.Contains(index, `href="`+TypePrefix+ty.Slug+`"`) {
			t.Errorf("the index does not link %s", ty.Slug)
		}
	}
	for _, p := range []string{TypePrefix + "nope", TypePrefix + "not-found/x", TypePrefix + "not-found.html", TypePrefix + "Not-Found", "/elsewhere"} {
		if rec := get("GET", p); rec.Code != 404 || rec.Header().Get("Content-Type") != ContentType {
			t.Errorf("GET %s: %d %q %s", p, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
	}
	if rec := get("POST", TypePrefix+NotFound); rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d %q", rec.Code, rec.Header().Get("Allow"))
	}
}

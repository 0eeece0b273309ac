package problem

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"strings"
)

// The problem types dereference (RFC 9457, section 3.1.1): GET
// /problems/<slug> answers a page that says what the problem means and
// what to do about it, and /problems/ lists them all. The pages are
// embedded (pages/<slug>.html holds each one's text) and rendered once.

//go:embed pages/*.html
var pageFiles embed.FS

// Type describes a problem type: its slug, the status it comes with and a
// short title for its page.
type Type struct {
	Slug   string
	Status int
	Title  string
}

// Types lists every problem type the server sends, in the order of
// docs/problems.md. Every slug constant of this package is here (the
// package's tests check it), and each has its page.
var Types = []Type{
	{BadRequest, http.StatusBadRequest, "The request does not match the API contract"},
	{RemoteNotAllowed, http.StatusBadRequest, "The remote is not allowed by the server's policy"},
	{Unauthorized, http.StatusUnauthorized, "Sign-in or valid credentials are needed"},
	{Forbidden, http.StatusForbidden, "The account is not allowed"},
	{ReadOnly, http.StatusForbidden, "The server is read-only"},
	{CSRF, http.StatusForbidden, "Cross-site request refused"},
	{NotFound, http.StatusNotFound, "Not found"},
	{MethodNotAllowed, http.StatusMethodNotAllowed, "Method not allowed"},
	{NotAcceptable, http.StatusNotAcceptable, "No acceptable media type"},
	{RequestTimeout, http.StatusRequestTimeout, "The request body did not arrive in time"},
	{Conflict, http.StatusConflict, "Conflict with a served repository"},
	{PayloadTooLarge, http.StatusRequestEntityTooLarge, "The request body is too large"},
	{UnsupportedMedia, http.StatusUnsupportedMediaType, "Unsupported body media type"},
	{Misdirected, http.StatusMisdirectedRequest, "The server does not answer to this host name"},
	{TooManyRequests, http.StatusTooManyRequests, "A rate limit was reached"},
	{Internal, http.StatusInternalServerError, "An unexpected error"},
	{FetchFailed, http.StatusBadGateway, "The upstream could not be fetched"},
	{UpstreamTooLarge, http.StatusBadGateway, "The upstream sent more than the fetch limits allow"},
	{UpstreamInvalid, http.StatusBadGateway, "The upstream sent invalid objects"},
	{ViewBuildFailed, http.StatusBadGateway, "The repository's refs make no view"},
	{Unavailable, http.StatusServiceUnavailable, "The server cannot do this now"},
	{Timeout, http.StatusGatewayTimeout, "The refresh took too long"},
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · stackd</title>
</head>
<body>
<main>
{{- if .Type}}
<h1>{{.Title}}</h1>
<p>Problem type <code>{{.Type}}</code> of the stackd API (RFC 9457 problem details).</p>
{{.Body}}
<p><a href="/problems/">All problem types</a> · <a href="/docs/">API documentation</a></p>
{{- else}}
<h1>{{.Title}}</h1>
<p>Every error the stackd API answers is an RFC 9457 problem (<code>application/problem+json</code>) whose <code>type</code> is one of these pages:</p>
<ul>
{{- range .Index}}
<li><a href="{{.Href}}"><code>{{.Href}}</code></a> ({{.Status}}): {{.Title}}</li>
{{- end}}
</ul>
<p><a href="/docs/">API documentation</a></p>
{{- end}}
</main>
</body>
</html>
`))

type indexEntry struct {
	Href   string
	Status int
	Title  string
}

type pageData struct {
	Title string
	Type  string
	Body  template.HTML // an embedded file of this package: trusted
	Index []indexEntry
}

// Pages serves the problem type pages under TypePrefix: GET (and HEAD)
// /problems/<slug> answers the page of a known type as text/html, and
// /problems/ the index of them all; any other path under /problems/ is a
// 404 problem, any other method a 405. It fails when a type has no page.
func Pages() (http.Handler, error) {
	pages := map[string][]byte{}
	var index []indexEntry
	for _, t := range Types {
		text, err := pageFiles.ReadFile("pages/" + t.Slug + ".html")
		if err != nil {
			return nil, fmt.Errorf("problem type %s: no page: %w", t.Slug, err)
		}
		var b bytes.Buffer
		if err := pageTemplate.Execute(&b, pageData{Title: t.Title, Type: TypePrefix + t.Slug, Body: template.HTML(text)}); err != nil { //nolint:gosec // embedded text
			return nil, fmt.Errorf("problem type %s: %w", t.Slug, err)
		}
		pages[t.Slug] = b.Bytes()
		index = append(index, indexEntry{Href: TypePrefix + t.Slug, Status: t.Status, Title: t.Title})
	}
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, pageData{Title: "stackd problem types", Index: index}); err != nil {
		return nil, fmt.Errorf("problem types index: %w", err)
	}
	pages[""] = b.Bytes()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			Write(w, r, http.StatusMethodNotAllowed, MethodNotAllowed, fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.EscapedPath()))
			return
		}
		slug, ok := strings.CutPrefix(r.URL.Path, TypePrefix)
		page, known := pages[slug]
		if !ok || !known {
			Write(w, r, http.StatusNotFound, NotFound, "no such problem type: "+r.URL.EscapedPath())
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = w.Write(page)
	}), nil
}

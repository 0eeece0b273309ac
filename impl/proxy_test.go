package impl_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/auth"
)

// presence is what a validating proxy (Prism, or kin-openapi's request
// validation in front of a server) can check of a security scheme: that
// the credential is there. It cannot verify a token.
func presence(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	switch s := in.SecurityScheme; {
	case s.Type == "http" && strings.EqualFold(s.Scheme, "bearer"):
		if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
			return nil
		}
	case s.Type == "apiKey" && s.In == "cookie":
		if c, err := r.Cookie(s.Name); err == nil && c.Value != "" {
			return nil
		}
	case s.Type == "apiKey" && s.In == "header":
		if r.Header.Get(s.Name) != "" {
			return nil
		}
	default:
		return fmt.Errorf("scheme %s/%s not modelled", s.Type, s.Scheme)
	}
	return errors.New("credential missing")
}

// signIn goes through the browser login (code flow with mockoidc) and
// returns the session cookie.
func signIn(t *testing.T, s *testServer) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.Get(s.srv.URL + "/auth/login?return=/api/v1/config")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("sign-in: %v", err)
	}
	resp.Body.Close()
	u, _ := url.Parse(s.srv.URL)
	for _, c := range jar.Cookies(u) {
		if c.Name == auth.SessionCookie {
			return c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// TestValidatingProxyAgrees: a validating proxy (kin-openapi's request
// validation with security checks, the way Prism and Swagger UI read the
// spec) pointed at the spec a server serves agrees with that server on
// every operation, in every posture of the Access table, for an anonymous
// caller, one with a bearer ID token and one with a session cookie (and
// the CSRF header Swagger UI adds): the proxy refuses a request for its
// security exactly when the server answers 401. (Refusals that are not
// about credentials, a read-only server's 403 to everyone, pass the proxy
// and are answered by the server with a declared 403.)
func TestValidatingProxyAgrees(t *testing.T) {
	idp := startIDP(t)
	dir := stackRepo(t).Dir
	tok := idToken(t, idp, nil)
	for _, p := range accessPostures(t, idp, dir) {
		t.Run(p.name, func(t *testing.T) {
			s := startServer(t, p.cfg, impl.Options{})
			ops, _ := specOperations(t)
			callers := []struct {
				name string
				hdr  []string
			}{{"anonymous", nil}}
			if p.users {
				session := signIn(t, s)
				callers = append(callers,
					struct {
						name string
						hdr  []string
					}{"bearer", []string{"Authorization", "Bearer " + tok}},
					struct {
						name string
						hdr  []string
					}{"session", []string{"Cookie", auth.SessionCookie + "=" + session, auth.CSRFHeader, "1"}},
				)
			}
			for _, path := range []string{"/openapi.json", "/openapi.yaml"} {
				doc, _ := servedDoc(t, s, path)
				d := *doc
				d.Servers = nil
				router, err := legacy.NewRouter(&d)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range callers {
					for _, o := range ops {
						if o.id == "authLogout" && c.name == "session" {
							continue // would end the session the next calls use
						}
						// The proxy's verdict.
						req := proxyRequest(t, s, o, c.hdr)
						route, params, err := router.FindRoute(req)
						if err != nil {
							t.Fatalf("%s: the served spec has no route for %s %s: %v", path, o.method, o.path, err)
						}
						err = openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
							Request: req, PathParams: params, Route: route,
							Options: &openapi3filter.Options{AuthenticationFunc: presence},
						})
						var secErr *openapi3filter.SecurityRequirementsError
						refused := errors.As(err, &secErr)
						if err != nil && !refused {
							t.Fatalf("%s %s: the proxy finds the request invalid: %v", c.name, o.id, err)
						}
						// The server's.
						code, _, body := gateCall(t, s, o, c.hdr...)
						if refused != (code == 401) {
							t.Errorf("%s %s %s: the proxy (%s) refuses: %v; the server answers %d %.120s",
								p.name, c.name, o.id, path, refused, code, body)
						}
					}
				}
			}
		})
	}
}

// proxyRequest is the request gateCall sends for o, as a proxy sees it.
func proxyRequest(t *testing.T, s *testServer, o specOp, hdr []string) *http.Request {
	t.Helper()
	if o.id == "createRepo" {
		o.body = `{"url":"file:///nonexistent/x.git"}`
	}
	var body io.Reader
	if o.body != "" {
		body = strings.NewReader(o.body)
		hdr = append(append([]string{}, hdr...), "Content-Type", "application/json")
	}
	req, err := http.NewRequest(o.method, s.srv.URL+o.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// The router matches the path from the root, like the served spec's
	// server URL "/".
	req.URL.Scheme, req.URL.Host = "", ""
	return req
}

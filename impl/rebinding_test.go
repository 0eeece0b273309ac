package impl_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stackd/stackd/impl"
)

// hostDo sends a request to s whose Host header (and, when set, Origin) is
// chosen by the test, as a browser on another name would send it.
func hostDo(t *testing.T, base, method, path, host, origin, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDNSRebindingRefused replays a DNS-rebinding page on the default local
// posture: requests to 127.0.0.1 carrying a foreign Host and the matching
// foreign Origin are refused with 421 for reads, sync and onboarding, and
// nothing runs; localhost, loopback addresses (any port, IPv6 included) and
// the --base-url host are served, and a loopback Origin may mutate.
func TestDNSRebindingRefused(t *testing.T) {
	cfg := baseConfig(t, stackRepo(t).Dir)
	cfg.BaseURL = "http://stackd.test:9999"
	s := startServer(t, cfg, impl.Options{})
	_, port, _ := net.SplitHostPort(s.srv.Listener.Addr().String())
	base := s.srv.URL
	const onboard = `{"url":"https://example.invalid/acme/x.git","id":"x"}`

	for _, host := range []string{"evil.example:" + port, "evil.example", "127.0.0.1.evil.example:" + port, "localhost.evil.example", "10.0.0.1:" + port, "[::2]:" + port, "0x7f000001:" + port} {
		origin := "http://" + host
		for _, rq := range []struct{ method, path, body string }{
			{"GET", "/api/v1/repos/local/view", ""},
			{"GET", "/api/v1/repos/local/branches/b/diff", ""},
			{"GET", "/openapi.json", ""},
			{"GET", "/docs/", ""},
			{"POST", "/api/v1/repos/local/sync", ""},
			{"POST", "/api/v1/repos", onboard},
		} {
			code, body := hostDo(t, base, rq.method, rq.path, host, origin, rq.body)
			if code != http.StatusMisdirectedRequest || problemType(t, body) != "/problems/misdirected-request" {
				t.Errorf("Host %s: %s %s: %d %s", host, rq.method, rq.path, code, body)
			}
			if strings.Contains(body, host) {
				t.Errorf("Host %s: the problem echoes the Host: %s", host, body)
			}
		}
	}
	if _, ok := s.app.Registry().Get("x"); ok {
		t.Fatal("a refused onboarding registered a repository")
	}
	if hist, _ := s.c.ListSyncsWithResponse(ctx(t), "local", nil); hist.JSON200 == nil || len(*hist.JSON200) != 1 {
		t.Fatalf("a refused sync ran: %s", hist.Body)
	}

	for _, host := range []string{"127.0.0.1:" + port, "127.0.0.1", "127.1.2.3:80", "localhost:" + port, "localhost", "LOCALHOST:1", "localhost.:8080",
		"[::1]:" + port, "[::1]", "[::ffff:127.0.0.1]:8080", "stackd.test:9999", "stackd.test"} {
		if code, body := hostDo(t, base, "GET", "/api/v1/repos/local/view", host, "", ""); code != 200 {
			t.Errorf("Host %s: read: %d %s", host, code, body)
		}
	}
	// A local page may mutate (its Origin is local, whatever its port) ...
	for _, origin := range []string{"http://localhost:3000", "http://127.0.0.1:" + port, "http://[::1]:8080", "http://stackd.test:9999"} {
		if code, body := hostDo(t, base, "POST", "/api/v1/repos/local/sync", "127.0.0.1:"+port, origin, ""); code != 200 {
			t.Errorf("Origin %s: sync: %d %s", origin, code, body)
		}
	}
	// ... a foreign one may not, even when the Host is local.
	for _, origin := range []string{"http://evil.example:" + port, "https://stackd.test.evil.example", "null"} {
		code, body := hostDo(t, base, "POST", "/api/v1/repos/local/sync", "127.0.0.1:"+port, origin, "")
		if code != 403 || problemType(t, body) != "/problems/csrf" {
			t.Errorf("Origin %s on a local Host: %d %s", origin, code, body)
		}
	}
}

// TestLoopbackIPv6 serves the app on [::1] (where the machine has IPv6):
// the default Host of such a request, [::1]:port, is local.
func TestLoopbackIPv6(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	}
	cfg := baseConfig(t, stackRepo(t).Dir)
	cfg.Addr = "[::1]:0"
	app, err := impl.New(cfg, slogDiscard(), impl.Options{})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(app.Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() { srv.Close(); app.Close() })
	resp, err := http.Get(srv.URL + "/api/v1/repos/local/view")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(srv.URL, "http://[::1]:") {
		t.Fatalf("GET %s: %d", srv.URL, resp.StatusCode)
	}
	code, body := hostDo(t, srv.URL, "GET", "/api/v1/repos/local/view", "evil.example", "", "")
	if code != http.StatusMisdirectedRequest {
		t.Fatalf("foreign Host over IPv6: %d %s", code, body)
	}
}

// TestHostNotCheckedOffLoopback: a server posture (non-loopback listener)
// is reached through names stackd cannot know; its Host is not checked,
// and an Origin is never trusted for matching the request's own Host.
func TestHostNotCheckedOffLoopback(t *testing.T) {
	cfg := baseConfig(t, stackRepo(t).Dir)
	cfg.Addr = "0.0.0.0:0"
	cfg.ReadOnly = true
	s := startServer(t, cfg, impl.Options{})
	if code, body := hostDo(t, s.srv.URL, "GET", "/api/v1/repos/local/view", "stackd.example.com", "", ""); code != 200 {
		t.Fatalf("read through a proxy name: %d %s", code, body)
	}
	code, body := hostDo(t, s.srv.URL, "POST", "/auth/logout", "stackd.example.com", "http://stackd.example.com", "")
	if code != 403 || problemType(t, body) != "/problems/csrf" {
		t.Fatalf("an Origin equal to the Host, without --base-url: %d %s", code, body)
	}
}

package impl_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/httpstack"
	"github.com/stackd/stackd/impl/validate"
	"github.com/stackd/stackd/impl/webhook"
)

// filler is an endless body of one byte, made as it is read: a 200 MB
// request without a 200 MB slice.
type filler byte

func (f filler) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(f)
	}
	return len(p), nil
}

// rawResult is the answer to a raw request, and how its sending ended.
type rawResult struct {
	status int
	header http.Header
	close  bool // the answer says Connection: close
	body   string
	sent   int64 // body bytes the client got to write
}

// rawRequest writes a request on its own connection: headers, then body
// from a goroutine, announced with Content-Length (length >= 0) or sent
// chunked (length < 0). It reads the answer while the body is still being
// written (the server may answer early and close), then closes the
// connection and waits for the writer. The deadline only guards against a
// hung test.
func rawRequest(t *testing.T, addr, method, path string, body io.Reader, length int64, hdr ...string) rawResult {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Minute))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, addr)
	for i := 0; i+1 < len(hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", hdr[i], hdr[i+1])
	}
	if length >= 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", length)
	} else {
		b.WriteString("Transfer-Encoding: chunked\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	sent := make(chan int64, 1)
	go func() {
		var n int64
		if length >= 0 {
			n, _ = io.Copy(conn, io.LimitReader(body, length))
		} else {
			cw := httputil.NewChunkedWriter(conn)
			n, _ = io.Copy(cw, body)
			if cw.Close() == nil {
				_, _ = io.WriteString(conn, "\r\n")
			}
		}
		sent <- n
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		conn.Close()
		<-sent
		t.Fatalf("%s %s: no answer: %v", method, path, err)
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	conn.Close()
	return rawResult{status: resp.StatusCode, header: resp.Header, close: resp.Close, body: string(data), sent: <-sent}
}

// postOperations are the POST operations of the embedded spec.
func postOperations(t *testing.T) []specOp {
	t.Helper()
	ops, _ := specOperations(t)
	var out []specOp
	for _, o := range ops {
		if o.method == http.MethodPost {
			out = append(out, o)
		}
	}
	if len(out) < 4 {
		t.Fatalf("only %d POST operations in the spec", len(out))
	}
	return out
}

// TestHugeBodiesRefusedEarly sends a 200 MB body, anonymously, to every
// POST of the spec in every posture, announced by Content-Length and
// chunked: the answer is the gate's 401/403 or 413, never a read of the
// body, and the process's allocations during the request stay below a few
// MB (the server runs in this process).
func TestHugeBodiesRefusedEarly(t *testing.T) {
	idp := startIDP(t)
	dir := stackRepo(t).Dir
	local := baseConfig(t, dir)
	localOIDC := oidcConfig(t, idp, dir)
	server := oidcConfig(t, idp, dir)
	server.Addr = "0.0.0.0:0" // the server posture; httptest still listens on loopback
	readOnly := baseConfig(t, dir)
	readOnly.ReadOnly = true
	const huge = 200 << 20
	const maxAlloc = 8 << 20
	for _, p := range []struct {
		name string
		cfg  config.Config
	}{
		{"local", local},
		{"local with oidc", localOIDC},
		{"server with oidc", server},
		{"read-only", readOnly},
	} {
		t.Run(p.name, func(t *testing.T) {
			s := startServer(t, p.cfg, impl.Options{})
			addr := s.srv.Listener.Addr().String()
			for _, o := range postOperations(t) {
				for _, mode := range []struct {
					name   string
					length int64
				}{{"content-length", huge}, {"chunked", -1}} {
					var body io.Reader = filler('a')
					if mode.length < 0 {
						body = io.LimitReader(filler('a'), huge)
					}
					var before, after runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&before)
					res := rawRequest(t, addr, o.method, o.path, body, mode.length, "Content-Type", "application/json")
					runtime.ReadMemStats(&after)
					what := fmt.Sprintf("%s %s (%s, %s)", o.method, o.path, o.id, mode.name)
					alloc := after.TotalAlloc - before.TotalAlloc
					t.Logf("%s: %d after %d bytes sent; %d KiB allocated", what, res.status, res.sent, alloc>>10)
					if !res.close {
						t.Errorf("%s: %d without Connection: close", what, res.status)
					}
					switch res.status {
					case 401, 403:
					case 413:
						if pt := problemType(t, res.body); pt != "/problems/payload-too-large" || !res.close {
							t.Errorf("%s: 413 %q, close %v", what, pt, res.close)
						}
					default:
						t.Errorf("%s: %d %s", what, res.status, res.body)
					}
					// Public operations pass the gate: they must meet the limit.
					if (o.id == auth.OpGitHubWebhook || o.id == auth.OpLogout) && res.status != 413 {
						t.Errorf("%s: public operation answered %d, want 413", what, res.status)
					}
					if alloc > maxAlloc {
						t.Errorf("%s: %d MiB allocated while refusing the body", what, alloc>>20)
					}
					if res.sent >= huge {
						t.Errorf("%s: the whole body was taken in", what)
					}
				}
			}
		})
	}
}

// TestBodyLimitsFromSpec: each operation's x-stackd-max-body is what the
// server enforces, to the byte, for announced and chunked bodies; the
// webhook's limit is the one its parser accepts; an over-limit body is
// refused with 413 before validation and the webhook still verifies its
// HMAC over the raw body under the limit.
func TestBodyLimitsFromSpec(t *testing.T) {
	doc, err := httpstack.Spec()
	if err != nil {
		t.Fatal(err)
	}
	limits, err := validate.LimitsOf(doc)
	if err != nil {
		t.Fatal(err)
	}
	ops, _ := specOperations(t)
	byID := map[string]specOp{}
	for _, o := range ops {
		byID[o.id] = o
	}
	hook := byID[auth.OpGitHubWebhook]
	if got := limits.For(hook.route); got != webhook.MaxBody {
		t.Fatalf("webhook limit %d, the parser takes %d", got, webhook.MaxBody)
	}
	if got := limits.For(byID[auth.OpCreateRepo].route); got < 1024 || got > 16<<10 {
		t.Fatalf("createRepo limit %d: want a few KiB", got)
	}
	if limits.Default() > 16<<10 {
		t.Fatalf("default limit %d: want a small one", limits.Default())
	}

	cfg := baseConfig(t, stackRepo(t).Dir)
	cfg.WebhookSecret = "s3cret"
	s := startServer(t, cfg, impl.Options{})
	addr := s.srv.Listener.Addr().String()
	for _, id := range []string{auth.OpCreateRepo, auth.OpGitHubWebhook, auth.OpSyncRepo} {
		o := byID[id]
		limit := limits.For(o.route)
		for _, length := range []int64{limit + 1, -1} {
			body := io.Reader(filler(' '))
			if length < 0 {
				body = io.LimitReader(filler(' '), limit+1)
			}
			res := rawRequest(t, addr, o.method, o.path, body, length, "Content-Type", "application/json")
			if res.status != 413 || !strings.Contains(res.body, "larger than") {
				t.Errorf("%s with %d+1 bytes (length %d): %d %s", id, limit, length, res.status, res.body)
			}
		}
	}
	// At the limit, the body reaches validation (all spaces: not JSON).
	o := byID[auth.OpCreateRepo]
	res := rawRequest(t, addr, o.method, o.path, filler(' '), limits.For(o.route), "Content-Type", "application/json")
	if res.status != 400 {
		t.Fatalf("createRepo at its limit: %d %s", res.status, res.body)
	}
	// A signed delivery of nearly 1 MiB: the HMAC is over the raw bytes.
	payload := `{"repository":{"full_name":"acme/none"},"ref":"refs/heads/main","pad":"` + strings.Repeat("x", webhook.MaxBody-200) + `"}`
	code, _, body := s.do("POST", "/api/v1/webhooks/github", strings.NewReader(payload),
		"Content-Type", "application/json", "X-GitHub-Event", "push", "X-GitHub-Delivery", "d-1",
		"X-Hub-Signature-256", sign("s3cret", payload))
	if code != 204 {
		t.Fatalf("signed delivery under the limit: %d %s", code, body)
	}
	code, _, body = s.do("POST", "/api/v1/webhooks/github", strings.NewReader(payload),
		"Content-Type", "application/json", "X-GitHub-Event", "push", "X-GitHub-Delivery", "d-2",
		"X-Hub-Signature-256", sign("other", payload))
	if code != 401 {
		t.Fatalf("badly signed delivery: %d %s", code, body)
	}
	// An empty delivery is a body too: its signature is checked (and fails).
	code, _, body = s.do("POST", "/api/v1/webhooks/github", nil, "X-GitHub-Event", "ping", "X-Hub-Signature-256", sign("other", ""))
	if code != 401 {
		t.Fatalf("empty delivery: %d %s", code, body)
	}
}

// TestStalledBodyIsCut: a body that stops arriving is cut at the body
// deadline (short here): the answer is 408 and the server closes the
// connection, which the test waits for. A request that the gate refuses
// before its body is read is answered and closed as well, without waiting
// for the rest. A body that arrives in time on the same server is served.
func TestStalledBodyIsCut(t *testing.T) {
	idp := startIDP(t)
	dir := stackRepo(t).Dir
	opts := impl.Options{BodyTimeout: 200 * time.Millisecond}
	s := startServer(t, baseConfig(t, dir), opts)
	gated := startServer(t, oidcConfig(t, idp, dir), opts)
	for _, tc := range []struct {
		name   string
		s      *testServer
		frame  string // what is sent after the headers, before stalling
		hdr    string
		status int
		ptype  string
	}{
		{"content-length", s, `{"url":"https://exa`, "Content-Length: 100\r\n", 408, "/problems/request-timeout"},
		{"chunked", s, "13\r\n{\"url\":\"https://exa\r\n", "Transfer-Encoding: chunked\r\n", 408, "/problems/request-timeout"},
		{"refused by the gate, content-length", gated, `{"url":"https://exa`, "Content-Length: 100\r\n", 401, "/problems/unauthorized"},
		{"refused by the gate, chunked", gated, "13\r\n{\"url\":\"https://exa\r\n", "Transfer-Encoding: chunked\r\n", 401, "/problems/unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.s.srv.Listener.Addr().String()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(time.Minute)) // guard only
			req := "POST /api/v1/repos HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\n" + tc.hdr + "\r\n" + tc.frame
			if _, err := io.WriteString(conn, req); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer to a stalled body: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || problemType(t, string(body)) != tc.ptype || !resp.Close {
				t.Fatalf("stalled body: %d close %v %s", resp.StatusCode, resp.Close, body)
			}
			// The server closes the connection: the next read ends.
			if n, err := br.Read(make([]byte, 1)); n != 0 || !(errors.Is(err, io.EOF) || isReset(err)) {
				t.Fatalf("connection still open after %d: %d %v", tc.status, n, err)
			}
		})
	}
	// In time: served (a bad URL is refused by the handler, after validation).
	code, _, body := s.do("POST", "/api/v1/repos", strings.NewReader(`{"url":"ftp://example.invalid/x.git"}`), "Content-Type", "application/json")
	if code != 400 {
		t.Fatalf("a body sent at once: %d %s", code, body)
	}
	if !strings.Contains(s.logs.String(), "status=408") {
		t.Fatalf("the access log has no 408")
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}

// TestSpecDeclaresBodyAndHostProblems: every operation declares the 421 of
// the Host check; every operation that takes a body declares its limit,
// 413 and 408; all through the shared component responses.
func TestSpecDeclaresBodyAndHostProblems(t *testing.T) {
	doc, err := httpstack.Spec()
	if err != nil {
		t.Fatal(err)
	}
	var withBody []string
	for p, item := range doc.Paths.Map() {
		for m, op := range item.Operations() {
			where := m + " " + p
			want := map[string]string{"421": "MisdirectedRequest"}
			if op.RequestBody != nil {
				withBody = append(withBody, op.OperationID)
				want["413"], want["408"] = "PayloadTooLarge", "RequestTimeout"
				if _, ok := op.Extensions[validate.MaxBodyExtension]; !ok {
					t.Errorf("%s takes a body without %s", where, validate.MaxBodyExtension)
				}
			}
			for code, comp := range want {
				r := op.Responses.Value(code)
				if r == nil || r.Ref != "#/components/responses/"+comp {
					t.Errorf("%s: no %s response referring to %s", where, code, comp)
				}
			}
		}
	}
	sort.Strings(withBody)
	if strings.Join(withBody, ",") != "createRepo,githubWebhook" {
		t.Fatalf("operations with a body: %v", withBody)
	}
	var p client.Problem
	if err := json.Unmarshal([]byte(`{"type":"t","title":"x","status":1,"requestId":"r"}`), &p); err != nil || p.RequestId == nil || *p.RequestId != "r" {
		t.Fatalf("Problem has no requestId: %+v %v", p, err)
	}
}

// bodyOf is a small helper for problem bodies in other tests.
func bodyOf(t *testing.T, raw string) client.Problem {
	t.Helper()
	var p client.Problem
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		t.Fatalf("not a problem: %s", raw)
	}
	return p
}

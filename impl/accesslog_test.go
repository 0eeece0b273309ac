package impl_test

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/requestid"
)

// TestAccessLog: with --access-log (the default) every request is one
// info line naming its method, route template, status, bytes, duration,
// request id, principal and client address, whether a handler, the gate
// or the router answered it; with --access-log=false there is none.
func TestAccessLog(t *testing.T) {
	idp := startIDP(t)
	dir := stackRepo(t).Dir
	token := idToken(t, idp, nil)
	type line struct {
		Level, Msg, Method, Route, RequestID, Principal, Client string
		Status                                                  int
		Bytes                                                   int64
		DurationMs                                              *int64
	}
	for _, on := range []bool{true, false} {
		cfg := oidcConfig(t, idp, dir)
		cfg.AccessLog = on
		logs := &syncBuffer{}
		srv := httptest.NewUnstartedServer(nil)
		cfg.BaseURL = "http://" + srv.Listener.Addr().String()
		app, err := impl.New(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			impl.Options{Rate: auth.RateLimit{PerSecond: -1}, SyncRate: auth.RateLimit{PerSecond: -1}, FailRate: auth.RateLimit{PerSecond: -1}})
		if err != nil {
			t.Fatal(err)
		}
		srv.Config.Handler = app.Handler()
		srv.Start()
		type sent struct {
			path, bearer string
			status       int
			requestID    string
		}
		reqs := []sent{
			{path: "/api/v1/repos/local/view", bearer: token, status: 200},
			{path: "/api/v1/repos/local/view", status: 401},
			{path: "/api/v1/nope", status: 404},
			{path: "/openapi.json", status: 200},
		}
		for i, s := range reqs {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+s.path, nil)
			if s.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+s.bearer)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != s.status {
				t.Fatalf("%s: %d, want %d", s.path, resp.StatusCode, s.status)
			}
			reqs[i].requestID = resp.Header.Get(requestid.Header)
		}
		srv.Close() // every handler has returned: every line is written
		app.Close()

		var got []line
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var l line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("log line %q: %v", sc.Text(), err)
			}
			if l.Msg == "request" {
				got = append(got, l)
			}
		}
		if !on {
			if len(got) != 0 {
				t.Fatalf("--access-log=false: %d lines: %+v", len(got), got)
			}
			continue
		}
		want := []line{
			{Level: "INFO", Method: "GET", Route: "/api/v1/repos/{repoID}/view", Status: 200, Principal: "robot@example.com", Client: "127.0.0.1"},
			{Level: "INFO", Method: "GET", Route: "/api/v1/repos/{repoID}/view", Status: 401, Client: "127.0.0.1"},
			{Level: "INFO", Method: "GET", Route: "", Status: 404, Client: "127.0.0.1"},
			{Level: "INFO", Method: "GET", Route: "/openapi.json", Status: 200, Client: "127.0.0.1"},
		}
		if len(got) != len(want) {
			t.Fatalf("%d access log lines, want %d: %+v", len(got), len(want), got)
		}
		for i, w := range want {
			g := got[i]
			if g.DurationMs == nil || g.Bytes <= 0 || g.RequestID == "" || g.RequestID != reqs[i].requestID {
				t.Errorf("%s: duration %v, bytes %d, request id %q (answered %q)", reqs[i].path, g.DurationMs, g.Bytes, g.RequestID, reqs[i].requestID)
			}
			g.DurationMs, g.Bytes, g.RequestID, g.Msg = nil, 0, "", ""
			if g != w {
				t.Errorf("%s: %+v, want %+v", reqs[i].path, g, w)
			}
		}
	}
}

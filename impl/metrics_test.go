package impl_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/metrics/metricstest"
)

// TestMetricsScrape runs a server with --metrics-addr through what an
// operator wants to watch (real git repositories behind git daemon, an
// onboarding that clones and one that fails, webhooks signed with the
// secret, an event stream, a manual sync, a rate-limit refusal) and
// scrapes its metrics listener before and after: each named series
// moved, the HTTP routes are templates, promtool accepts the scrape, and
// every series the Grafana dashboard queries is in it. Neither /metrics
// nor pprof is ever served on the API's listener.
func TestMetricsScrape(t *testing.T) {
	up := newUpstream(t, "acme/metered.git")
	cfg := mirrorConfig(t)
	cfg.WebhookSecret = "s3cret"
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.Version = "v1.2.3-test"
	// One failed authentication per address, then 429: the second bad
	// signature is a rate-limit refusal.
	s := startServer(t, cfg, impl.Options{FailRate: auth.RateLimit{PerSecond: 0.001, Burst: 1}})
	addr := s.app.MetricsAddr()
	if addr == "" {
		t.Fatal("no metrics listener with --metrics-addr")
	}
	before := metricstest.Get(t, addr)

	// An onboarding: a clone (an upload-pack session, pack bytes), a run
	// of trigger onboard, a view built and served.
	onboard(t, s, up.url)
	// An onboarding that cannot clone (nothing listens there).
	if resp, err := s.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: "git://127.0.0.1:1/missing.git", Id: strptr("missing")}); err != nil || resp.StatusCode() < 400 {
		t.Fatalf("onboarding an unreachable upstream: %v %d", err, resp.StatusCode())
	}
	ev := openEvents(t, s, "metered")
	rf, ok := s.app.Refresh().Get("metered")
	if !ok {
		t.Fatal("no refresher for metered")
	}

	post := func(delivery, body, sig string) int {
		hdr := []string{"Content-Type", "application/json", "X-GitHub-Event", "push", "X-GitHub-Delivery", delivery}
		if sig != "" {
			hdr = append(hdr, "X-Hub-Signature-256", sig)
		}
		code, _, _ := s.do("POST", "/api/v1/webhooks/github", strings.NewReader(body), hdr...)
		return code
	}
	up.work.Commit("metered", map[string]string{"m": "m\n"})
	up.push("main")
	push := `{"ref":"refs/heads/main","repository":{"full_name":"acme/metered"}}`
	if code := post("d-1", push, sign("s3cret", push)); code != 202 {
		t.Fatalf("signed push: %d", code)
	}
	ev.until(t, "sync_finished", `"trigger":"webhook"`)
	if _, err := rf.Wait(ctx(t), rf.History()[0].ID); err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		name, delivery, body, sig string
		want                      int
	}{
		{"duplicate", "d-1", push, sign("s3cret", push), 204},
		{"unparseable", "d-2", "not json", sign("s3cret", "not json"), 204},
		{"bad signature", "d-3", push, sign("wrong", push), 401},
		{"bad signature, bucket empty", "d-4", push, sign("wrong", push), 429},
	} {
		if code := post(d.delivery, d.body, d.sig); code != d.want {
			t.Fatalf("%s: %d, want %d", d.name, code, d.want)
		}
	}
	syncOK(t, s, "metered")
	if resp, err := s.c.GetViewWithResponse(ctx(t), "metered", nil); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("view: %v", err)
	}
	after := metricstest.Get(t, addr)

	t.Run("series moved", func(t *testing.T) {
		repo := map[string]string{"repo": "metered"}
		moved := []struct {
			name   string
			labels map[string]string
		}{
			{"stackd_http_requests_total", map[string]string{"route": "/api/v1/repos/{repoID}/view", "method": "GET", "code": "200"}},
			{"stackd_http_requests_total", map[string]string{"route": "/api/v1/webhooks/github", "code": "429"}},
			{"stackd_http_request_duration_seconds", map[string]string{"route": "/api/v1/repos", "method": "POST"}},
			{"stackd_http_requests_in_flight", nil}, // the open event stream
			{"stackd_sync_runs_total", map[string]string{"trigger": "onboard", "mode": "mirror-fetch", "outcome": "succeeded"}},
			{"stackd_sync_runs_total", map[string]string{"trigger": "onboard", "outcome": "fetch_failed"}},
			{"stackd_sync_runs_total", map[string]string{"trigger": "webhook", "mode": "mirror-fetch", "outcome": "succeeded"}},
			{"stackd_sync_runs_total", map[string]string{"trigger": "manual", "outcome": "succeeded"}},
			{"stackd_sync_run_duration_seconds", map[string]string{"mode": "mirror-fetch", "outcome": "succeeded"}},
			{"stackd_sync_queue_wait_seconds", map[string]string{"trigger": "webhook"}},
			{"stackd_sync_refs_changed_total", repo},
			{"stackd_mirror_fetch_bytes_total", repo},
			{"stackd_mirror_upload_pack_sessions_total", repo},
			{"stackd_onboarding_clones_total", map[string]string{"outcome": "succeeded"}},
			{"stackd_onboarding_clones_total", map[string]string{"outcome": "failed"}},
			{"stackd_view_build_duration_seconds", nil},
			{"stackd_view_bytes", repo},
			{"stackd_view_branches", repo},
			{"stackd_event_streams", nil},
			{"stackd_webhook_deliveries_total", map[string]string{"outcome": "accepted"}},
			{"stackd_webhook_deliveries_total", map[string]string{"outcome": "duplicate"}},
			{"stackd_webhook_deliveries_total", map[string]string{"outcome": "bad_signature"}},
			{"stackd_webhook_deliveries_total", map[string]string{"outcome": "unparseable"}},
			{"stackd_rate_limit_refusals_total", map[string]string{"bucket": "auth_failure"}},
			{"stackd_store_query_duration_seconds", map[string]string{"engine": "sqlite", "operation": "put_sync"}},
			{"stackd_store_query_duration_seconds", map[string]string{"engine": "sqlite", "operation": "seen_delivery"}},
			{"go_goroutines", nil},
			{"process_cpu_seconds_total", nil},
		}
		for _, m := range moved {
			if b, a := before.Value(m.name, m.labels), after.Value(m.name, m.labels); !(a > b) {
				t.Errorf("%s%v: %v before, %v after: did not move", m.name, m.labels, b, a)
			}
		}
		if got := after.Value("stackd_build_info", map[string]string{"version": "v1.2.3-test"}); got != 1 {
			t.Errorf("stackd_build_info{version=v1.2.3-test} = %v, want 1", got)
		}
		// Present from the start, whether or not they moved.
		for _, name := range []string{"stackd_sync_runs_queued", "stackd_sync_runs_running", "stackd_leases_held", "stackd_lease_wait_seconds", "stackd_lease_holds_total"} {
			if _, ok := before.Families[name]; !ok {
				t.Errorf("%s is not in the scrape", name)
			}
		}
		// Route templates, never raw paths: no label value names the
		// repository.
		for _, route := range after.LabelValues("stackd_http_requests_total", "route") {
			if strings.Contains(route, "metered") {
				t.Errorf("route label %q is a raw path", route)
			}
		}
		// The repository id is the only unbounded label.
		for name, f := range after.Families {
			for _, m := range f.Metric {
				for _, l := range m.Label {
					if strings.Contains(l.GetValue(), "metered") && l.GetName() != "repo" {
						t.Errorf("%s: label %s=%q names a repository", name, l.GetName(), l.GetValue())
					}
				}
			}
		}
	})

	t.Run("promtool", func(t *testing.T) {
		promtoolCheck(t, after.Text)
	})

	t.Run("grafana dashboard", func(t *testing.T) {
		for _, q := range dashboardQueries(t) {
			names := seriesNames(q.expr)
			if len(names) == 0 {
				t.Errorf("panel %q: expr %q queries no series", q.panel, q.expr)
			}
			for _, n := range names {
				if !inScrape(after, n) {
					t.Errorf("panel %q: %s is not in a real scrape", q.panel, n)
				}
			}
		}
	})

	t.Run("alert rules", func(t *testing.T) {
		rules := filepath.Join("..", "docs", "prometheus-alerts.yml")
		raw, err := os.ReadFile(rules)
		if err != nil {
			t.Fatal(err)
		}
		var file struct {
			Groups []struct {
				Rules []struct {
					Alert string `yaml:"alert"`
					Expr  string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(raw, &file); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, g := range file.Groups {
			for _, r := range g.Rules {
				n++
				names := seriesNames(r.Expr)
				if len(names) == 0 {
					t.Errorf("alert %s: expr %q queries no series", r.Alert, r.Expr)
				}
				for _, name := range names {
					if !inScrape(after, name) {
						t.Errorf("alert %s: %s is not in a real scrape", r.Alert, name)
					}
				}
			}
		}
		if n == 0 {
			t.Fatal("no alert rules")
		}
		promtoolRun(t, nil, "check", "rules", rules)
	})

	t.Run("the README lists every series", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join("..", "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, m := range regexp.MustCompile("(?m)^\\| `(stackd_[a-z_]+)` \\|").FindAllStringSubmatch(string(raw), -1) {
			listed[m[1]] = true
		}
		for name := range after.Families {
			if strings.HasPrefix(name, "stackd_") && !listed[name] {
				t.Errorf("%s is not in the README's table of series", name)
			}
		}
		for name := range listed {
			if _, ok := after.Families[name]; !ok {
				t.Errorf("the README lists %s, which a scrape does not have", name)
			}
		}
	})

	t.Run("not on the API listener", func(t *testing.T) {
		for _, p := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/cmdline"} {
			code, h, body := s.do("GET", p, nil)
			if strings.Contains(body, "stackd_build_info") || strings.Contains(body, "# TYPE") || strings.Contains(body, "goroutine") ||
				strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
				t.Errorf("GET %s on the API listener: %d %s: it serves metrics or pprof", p, code, h.Get("Content-Type"))
			}
		}
	})

	t.Run("pprof off by default", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/debug/pprof/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Fatalf("GET /debug/pprof/ without --metrics-pprof: %d, want 404", resp.StatusCode)
		}
	})
	// Last: it removes the repository.
	t.Run("a removed repository's series go", func(t *testing.T) {
		if resp, err := s.c.DeleteRepoWithResponse(ctx(t), "metered"); err != nil || resp.StatusCode() != 204 {
			t.Fatalf("delete: %v", err)
		}
		gone := metricstest.Get(t, addr)
		for name, f := range gone.Families {
			for _, m := range f.Metric {
				for _, l := range m.Label {
					if l.GetName() == "repo" && l.GetValue() == "metered" {
						t.Errorf("%s{repo=metered} is still exported after the removal", name)
					}
				}
			}
		}
	})
}

// TestMetricsPprof: with --metrics-pprof, pprof answers on the metrics
// listener, and still never on the API's.
func TestMetricsPprof(t *testing.T) {
	cfg := baseConfig(t, "")
	cfg.MetricsAddr, cfg.MetricsPprof = "127.0.0.1:0", true
	s := startServer(t, cfg, impl.Options{})
	resp, err := http.Get("http://" + s.app.MetricsAddr() + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(body) == 0 {
		t.Fatalf("GET /debug/pprof/cmdline with --metrics-pprof: %d %q", resp.StatusCode, body)
	}
	if _, h, body := s.do("GET", "/debug/pprof/cmdline", nil); strings.HasPrefix(h.Get("Content-Type"), "text/plain") || strings.Contains(body, os.Args[0]) {
		t.Fatalf("pprof answered on the API listener: %s", h.Get("Content-Type"))
	}
}

// TestNoMetricsListenerByDefault: without --metrics-addr there is none.
func TestNoMetricsListenerByDefault(t *testing.T) {
	s := startServer(t, baseConfig(t, ""), impl.Options{})
	if a := s.app.MetricsAddr(); a != "" {
		t.Fatalf("a metrics listener at %s without --metrics-addr", a)
	}
}

// promtoolCheck lints a scrape with `promtool check metrics`.
func promtoolCheck(t *testing.T, text string) {
	t.Helper()
	promtoolRun(t, strings.NewReader(text), "check", "metrics")
}

// promtoolRun runs promtool with args, stdin from in: skipped when
// promtool is not installed, unless STACKD_PROMTOOL=require (CI), which
// fails instead.
func promtoolRun(t *testing.T, in io.Reader, args ...string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("STACKD_PROMTOOL") == "require" {
			t.Fatalf("STACKD_PROMTOOL=require but promtool is not on PATH (Debian: apt-get install prometheus): %v", err)
		}
		t.Skip("promtool is not on PATH (Debian's prometheus package ships it); STACKD_PROMTOOL=require makes this fail")
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin = in
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// dashboardQuery is one target of a panel of docs/grafana-dashboard.json.
type dashboardQuery struct{ panel, expr string }

func dashboardQueries(t *testing.T) []dashboardQuery {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "docs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("docs/grafana-dashboard.json: %v", err)
	}
	hasDatasource := false
	for _, v := range dash.Templating.List {
		if v.Type == "datasource" && string(v.Query) == `"prometheus"` {
			hasDatasource = true
		}
	}
	if !hasDatasource {
		t.Error("docs/grafana-dashboard.json has no Prometheus datasource variable")
	}
	var out []dashboardQuery
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, dashboardQuery{panel: p.Title, expr: tg.Expr})
		}
	}
	if len(out) < 10 {
		t.Fatalf("%d queries in the dashboard, want at least one per panel of the README's list", len(out))
	}
	return out
}

// seriesName matches the series a PromQL expression names (stackd's, Go's
// and the process's); label names and functions never start so.
var seriesName = regexp.MustCompile(`\b(?:stackd|go|process)_[a-zA-Z0-9_:]+`)

func seriesNames(expr string) []string {
	// Label matchers' values are quoted: drop them first.
	unquoted := regexp.MustCompile(`"[^"]*"`).ReplaceAllString(expr, `""`)
	return seriesName.FindAllString(unquoted, -1)
}

// inScrape reports whether a series name is in the scrape: a family's
// name, or a histogram's _bucket, _sum or _count.
func inScrape(s metricstest.Scrape, name string) bool {
	if _, ok := s.Families[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f, ok := s.Families[base]; ok && (f.GetType() == dto.MetricType_HISTOGRAM || suffix != "_bucket" && f.GetType() == dto.MetricType_SUMMARY) {
				return true
			}
		}
	}
	return false
}

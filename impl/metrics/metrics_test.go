package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestNilMetricsCountsNothing: every observer is safe on a nil *Metrics
// (packages and tests that do not care pass nil).
func TestNilMetricsCountsNothing(t *testing.T) {
	var m *Metrics
	m.HTTPStarted()("/x", "GET", 200)
	m.SyncQueued("manual", time.Second)
	m.SyncEnded("r", "manual", "reread", "succeeded", time.Second, 3)
	m.ViewBuilt("full", time.Second)
	m.ViewServed("r", 10, 2)
	m.Forget("r")
	m.Transfers("r").SessionOpened()
	m.Transfers("r").Received(10)
	m.Onboarded(true)
	m.WebhookDelivery(WebhookAccepted)
	m.RateLimited(BucketAPI)
	m.LeaseTaken(time.Second)()
	m.StoreQuery("sqlite", "ping", time.Millisecond)
	m.GaugeFunc("x", "y", func() float64 { return 1 })
}

// TestSeries: what the observers count, in the series the README lists.
func TestSeries(t *testing.T) {
	m := New("v9")
	done := m.HTTPStarted()
	if got := testutil.ToFloat64(m.httpInFlight); got != 1 {
		t.Fatalf("in flight = %v, want 1", got)
	}
	done("/api/v1/repos/{repoID}", "GET", 404)
	if got := testutil.ToFloat64(m.httpInFlight); got != 0 {
		t.Fatalf("in flight after the answer = %v, want 0", got)
	}
	if got := testutil.ToFloat64(m.httpRequests.WithLabelValues("/api/v1/repos/{repoID}", "GET", "404")); got != 1 {
		t.Fatalf("requests = %v", got)
	}
	m.SyncEnded("r", "manual", "", "cancelled", -1, 0)
	if got := testutil.ToFloat64(m.syncRuns.WithLabelValues("manual", "none", "cancelled")); got != 1 {
		t.Fatalf("a run that never started: %v, want mode none", got)
	}
	if got := testutil.CollectAndCount(m.syncDuration); got != 0 {
		t.Fatalf("a run that never started has a duration: %d series", got)
	}
	m.Transfers("r").Received(100)
	m.Transfers("r").Received(0)
	m.ViewServed("r", 10, 2)
	if got := testutil.ToFloat64(m.fetchBytes.WithLabelValues("r")); got != 100 {
		t.Fatalf("fetch bytes = %v", got)
	}
	m.Forget("r")
	if n := testutil.CollectAndCount(m.fetchBytes) + testutil.CollectAndCount(m.viewBytes); n != 0 {
		t.Fatalf("%d series of a forgotten repository", n)
	}
	released := m.LeaseTaken(time.Second)
	if got := testutil.ToFloat64(m.leaseHeld); got != 1 {
		t.Fatalf("leases held = %v", got)
	}
	released()
	if got := testutil.ToFloat64(m.leaseHeld); got != 0 {
		t.Fatalf("leases held after release = %v", got)
	}
}

// TestHandler: /metrics in the text format; pprof only when asked.
func TestHandler(t *testing.T) {
	m := New("v9")
	for _, tc := range []struct {
		pprof bool
		path  string
		want  int
	}{
		{false, "/metrics", 200},
		{false, "/debug/pprof/", 404},
		{false, "/debug/pprof/cmdline", 404},
		{true, "/metrics", 200},
		{true, "/debug/pprof/", 200},
		{true, "/debug/pprof/cmdline", 200},
		{true, "/api/v1/repos", 404},
	} {
		srv := httptest.NewServer(m.Handler(tc.pprof))
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("pprof %v: GET %s = %d, want %d", tc.pprof, tc.path, resp.StatusCode, tc.want)
		}
		if tc.path == "/metrics" && !strings.Contains(string(body), `stackd_build_info{goversion="`) {
			t.Errorf("GET /metrics lacks stackd_build_info:\n%s", body)
		}
	}
}

func TestStatusText(t *testing.T) {
	for code, want := range map[int]string{200: "200", 404: "404", 599: "599", 0: "0", 1000: "0", 42: "0"} {
		if got := statusText(code); got != want {
			t.Errorf("statusText(%d) = %q, want %q", code, got, want)
		}
	}
}

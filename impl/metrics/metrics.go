// Package metrics holds stackd's Prometheus series and serves them on
// the metrics listener (--metrics-addr), apart from the API's.
//
// A Metrics owns its registry (never prometheus.DefaultRegisterer), so
// that several servers in one process, as in the tests, count apart. The
// packages that observe something take a *Metrics, or an interface it
// satisfies, and every method is safe on a nil *Metrics: a package or a
// test that does not care passes nil and nothing is counted.
//
// Naming follows Prometheus: the prefix stackd_, base units (_seconds,
// _bytes), _total on counters. Every label has a bounded set of values
// except repo, a repository id: the operator's and the onboarded
// repositories are the only unbounded label, and a removed repository's
// series are deleted (Forget). README.md ("Operations") lists every
// series.
package metrics

import (
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Outcomes of a webhook delivery (WebhookDelivery).
const (
	WebhookAccepted     = "accepted"      // a push of a served mirror: a refresh was queued (202)
	WebhookDuplicate    = "duplicate"     // a delivery id seen within the hour (204)
	WebhookBadSignature = "bad_signature" // a missing or wrong X-Hub-Signature-256 (401, or 429 when its bucket is empty)
	WebhookUnparseable  = "unparseable"   // signed, but the push payload cannot be read (204)
	WebhookIgnored      = "ignored"       // signed and read: another event, or a repository not served (204)
)

// Buckets of the rate limits (RateLimited).
const (
	BucketAPI         = "api"          // --rate-limit
	BucketSync        = "sync"         // --sync-rate-limit
	BucketAuthFailure = "auth_failure" // --auth-failure-rate-limit
)

// Metrics is stackd's set of series and the registry that holds them.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	httpInFlight prometheus.Gauge

	syncRuns     *prometheus.CounterVec
	syncDuration *prometheus.HistogramVec
	syncWait     *prometheus.HistogramVec
	refsChanged  *prometheus.CounterVec

	fetchBytes  *prometheus.CounterVec
	uploadPacks *prometheus.CounterVec
	onboardings *prometheus.CounterVec

	viewBuild    *prometheus.HistogramVec
	viewBytes    *prometheus.GaugeVec
	viewBranches *prometheus.GaugeVec

	webhooks   *prometheus.CounterVec
	rateLimits *prometheus.CounterVec

	leaseWait prometheus.Histogram
	leasesGot prometheus.Counter
	leaseHeld prometheus.Gauge

	storeQuery *prometheus.HistogramVec
}

// Latency buckets, in seconds: from a millisecond (a cached read, a
// store query) to ten minutes (a large first clone).
var (
	fastBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	slowBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
)

// New makes the series, registered in a registry of their own with the
// Go runtime and process collectors and stackd_build_info{version}.
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	f := factory{reg}
	m := &Metrics{
		reg: reg,
		httpRequests: f.counter("stackd_http_requests_total",
			"HTTP requests answered, by route template, method and status code.", "route", "method", "code"),
		httpDuration: f.histogram("stackd_http_request_duration_seconds",
			"Time to answer an HTTP request (an event stream: its whole life), by route template and method.", fastBuckets, "route", "method"),
		httpInFlight: f.gauge("stackd_http_requests_in_flight", "HTTP requests being answered (open event streams included)."),

		syncRuns: f.counter("stackd_sync_runs_total",
			"Sync runs ended on this process, by trigger, mode and outcome.", "trigger", "mode", "outcome"),
		syncDuration: f.histogram("stackd_sync_run_duration_seconds",
			"Time a sync run took from its start to its end, by mode and outcome.", slowBuckets, "mode", "outcome"),
		syncWait: f.histogram("stackd_sync_queue_wait_seconds",
			"Time a sync run waited between being queued and starting (debounce window and worker slots), by trigger.", slowBuckets, "trigger"),
		refsChanged: f.counter("stackd_sync_refs_changed_total",
			"Refs (branches and metadata) that successful sync runs changed, by repository.", "repo"),

		fetchBytes: f.counter("stackd_mirror_fetch_bytes_total",
			"Bytes of pack data received from upstreams (clones and fetches), by repository.", "repo"),
		uploadPacks: f.counter("stackd_mirror_upload_pack_sessions_total",
			"Upload-pack sessions opened with upstreams (one per clone or fetch), by repository.", "repo"),
		onboardings: f.counter("stackd_onboarding_clones_total",
			"Onboardings (POST /api/v1/repos) that cloned their repository, by outcome (succeeded, failed).", "outcome"),

		viewBuild: f.histogram("stackd_view_build_duration_seconds",
			"Time to build a view from a repository's refs, by kind (full, patched, incremental).", slowBuckets, "kind"),
		viewBytes: f.gaugeVec("stackd_view_bytes",
			"Size of the JSON of the view currently served, by repository.", "repo"),
		viewBranches: f.gaugeVec("stackd_view_branches",
			"Branches in the stacks of the view currently served, by repository.", "repo"),

		webhooks: f.counter("stackd_webhook_deliveries_total",
			"GitHub webhook deliveries, by outcome (accepted, duplicate, bad_signature, unparseable, ignored).", "outcome"),
		rateLimits: f.counter("stackd_rate_limit_refusals_total",
			"Requests refused (429) by a rate limit, by bucket (api, sync, auth_failure).", "bucket"),

		leaseWait: f.plainHistogram("stackd_lease_wait_seconds",
			"Time this replica waited for a repository's lease before holding it (PostgreSQL replicas).", slowBuckets),
		leasesGot: f.plainCounter("stackd_lease_holds_total",
			"Repository leases this replica took and held (PostgreSQL replicas)."),
		leaseHeld: f.gauge("stackd_leases_held", "Repository leases this replica holds now (PostgreSQL replicas)."),

		storeQuery: f.histogram("stackd_store_query_duration_seconds",
			"Time of a store operation (its queries and transaction), by engine (sqlite, postgres) and operation.", fastBuckets, "engine", "operation"),
	}
	build := f.gaugeVec("stackd_build_info", "Always 1: the version of stackd and of Go that built it.", "version", "goversion")
	build.WithLabelValues(version, runtime.Version()).Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// factory makes series registered in one registry.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) plainCounter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) plainHistogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

// GaugeFunc registers a gauge read from f at each scrape (the open event
// streams, the queued runs: counts their owners keep anyway).
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// Series registered with GaugeFunc by the assembly (impl).
const (
	EventStreams = "stackd_event_streams"
	SyncQueued   = "stackd_sync_runs_queued"
	SyncRunning  = "stackd_sync_runs_running"
)

// Handler serves the registry in the Prometheus text format at /metrics
// and, with pprof, net/http/pprof at /debug/pprof/: the handler of the
// metrics listener, never the API's.
func (m *Metrics) Handler(withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Registry is the registry the series live in (tests gather it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// HTTPStarted counts a request in flight; call the function it returns
// when the answer is complete, with the route template ("" when no route
// matched), the method and the status.
func (m *Metrics) HTTPStarted() func(route, method string, code int) {
	if m == nil {
		return func(string, string, int) {}
	}
	start := time.Now()
	m.httpInFlight.Inc()
	return func(route, method string, code int) {
		m.httpInFlight.Dec()
		m.httpRequests.WithLabelValues(route, method, statusText(code)).Inc()
		m.httpDuration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	}
}

// statusText is the code label: the three digits (a handful of values).
func statusText(code int) string {
	if code < 100 || code > 999 {
		return "0"
	}
	return string([]byte{byte('0' + code/100), byte('0' + code/10%10), byte('0' + code%10)})
}

// SyncQueued observes a run's wait in the queue, when it starts.
func (m *Metrics) SyncQueued(trigger string, wait time.Duration) {
	if m == nil {
		return
	}
	m.syncWait.WithLabelValues(trigger).Observe(wait.Seconds())
}

// SyncEnded counts a run that ended on this process; ran is how long it
// ran (negative: it never started, cancelled in the queue).
func (m *Metrics) SyncEnded(repo, trigger, mode, outcome string, ran time.Duration, refsChanged int) {
	if m == nil {
		return
	}
	if mode == "" {
		mode = "none"
	}
	m.syncRuns.WithLabelValues(trigger, mode, outcome).Inc()
	if ran >= 0 {
		m.syncDuration.WithLabelValues(mode, outcome).Observe(ran.Seconds())
	}
	if refsChanged > 0 {
		m.refsChanged.WithLabelValues(repo).Add(float64(refsChanged))
	}
}

// ViewBuilt observes a view's build (kind: full, patched or incremental).
func (m *Metrics) ViewBuilt(kind string, d time.Duration) {
	if m == nil {
		return
	}
	m.viewBuild.WithLabelValues(kind).Observe(d.Seconds())
}

// ViewServed sets the size of the view a repository serves now.
func (m *Metrics) ViewServed(repo string, bytes, branches int) {
	if m == nil {
		return
	}
	m.viewBytes.WithLabelValues(repo).Set(float64(bytes))
	m.viewBranches.WithLabelValues(repo).Set(float64(branches))
}

// Forget deletes the series of a removed repository.
func (m *Metrics) Forget(repo string) {
	if m == nil {
		return
	}
	for _, v := range []interface{ DeleteLabelValues(...string) bool }{m.viewBytes, m.viewBranches, m.refsChanged, m.fetchBytes, m.uploadPacks} {
		v.DeleteLabelValues(repo)
	}
}

// Transfers is what one repository's mirror transfers
// (mirror.Transfers).
func (m *Metrics) Transfers(repo string) Transfers { return Transfers{m: m, repo: repo} }

// Transfers counts one repository's upload-pack sessions and pack bytes;
// its zero value (and that of a nil Metrics) counts nothing.
type Transfers struct {
	m    *Metrics
	repo string
}

// SessionOpened counts an upload-pack session opened with the upstream.
func (t Transfers) SessionOpened() {
	if t.m == nil {
		return
	}
	t.m.uploadPacks.WithLabelValues(t.repo).Inc()
}

// Received counts n bytes of pack data received.
func (t Transfers) Received(n int) {
	if t.m == nil || n <= 0 {
		return
	}
	t.m.fetchBytes.WithLabelValues(t.repo).Add(float64(n))
}

// Onboarded counts an onboarding's clone by outcome.
func (m *Metrics) Onboarded(ok bool) {
	if m == nil {
		return
	}
	outcome := "failed"
	if ok {
		outcome = "succeeded"
	}
	m.onboardings.WithLabelValues(outcome).Inc()
}

// WebhookDelivery counts a delivery by outcome (Webhook*).
func (m *Metrics) WebhookDelivery(outcome string) {
	if m == nil {
		return
	}
	m.webhooks.WithLabelValues(outcome).Inc()
}

// RateLimited counts a refusal by a rate limit's bucket (Bucket*).
func (m *Metrics) RateLimited(bucket string) {
	if m == nil {
		return
	}
	m.rateLimits.WithLabelValues(bucket).Inc()
}

// LeaseTaken observes a lease taken after waiting wait; call the
// function it returns when the lease is released.
func (m *Metrics) LeaseTaken(wait time.Duration) (released func()) {
	if m == nil {
		return func() {}
	}
	m.leaseWait.Observe(wait.Seconds())
	m.leasesGot.Inc()
	m.leaseHeld.Inc()
	return m.leaseHeld.Dec
}

// StoreQuery observes a store operation's time.
func (m *Metrics) StoreQuery(engine, operation string, d time.Duration) {
	if m == nil {
		return
	}
	m.storeQuery.WithLabelValues(engine, operation).Observe(d.Seconds())
}

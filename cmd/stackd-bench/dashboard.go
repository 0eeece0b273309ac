package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/heapprofiler"
	cdpio "github.com/chromedp/cdproto/io"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/performance"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/tracing"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// The dashboard figures (issue 16): the repository page of the web app in
// headless Chromium, driven through the DevTools protocol, at the sizes
// stackd serves. The app records Performance measures (impl/dashboard/web,
// README "Performance marks"); the harness reads them with
// performance.getEntriesByName. Each time figure has a floor measured in the
// same browser in the same run: a quiet page of the same origin (/healthz)
// that fetches and parses the same view, without the app.

// defaultChromium is Debian's chromium (.ci/run installs it).
const defaultChromium = "/usr/bin/chromium"

// dashMinSize is the smallest size the dashboard step runs at outside smoke
// mode: the figures are at 10,000 and 50,000 branches.
const dashMinSize = 10_000

// cardLimit is the most branch cards the page may hold while scrolling
// ("never 50,000 cards in the DOM": a few hundred at most).
const cardLimit = 500

// dashAt reports whether the dashboard step runs at size n: every size in
// smoke mode, else the sizes from dashMinSize up (or every size when none is
// that large).
func (b *bench) dashAt(n int) bool {
	if !b.opt.wants("dashboard") {
		return false
	}
	if b.opt.smoke || n >= dashMinSize {
		return true
	}
	return !slices.ContainsFunc(b.opt.sizes, func(s int) bool { return s >= dashMinSize })
}

// headless is one Chromium process with a fresh profile.
type headless struct {
	ctx     context.Context // the browser's first tab: parent of the measured tabs
	cancel  func()
	version string
	log     *os.File
}

func (h *headless) close() {
	h.cancel()
	if h.log != nil {
		h.log.Close()
	}
}

// startChromium starts headless Chromium with the flags of the browser
// tests (impl/browser_test.go) and a fresh user-data-dir, its output in the
// run's logs. The browser lives as long as ctx (and is killed with this
// process: chromedp sets Pdeathsig).
func (b *bench) startChromium(ctx context.Context, label, profile string) (*headless, error) {
	logf, err := os.Create(filepath.Join(b.logDir, "chromium-"+label+".log"))
	if err != nil {
		return nil, fmt.Errorf("chromium log: %w", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(b.opt.chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 1024),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Env(b.git.env...),
		chromedp.CombinedOutput(logf),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	h := &headless{ctx: bctx, log: logf, cancel: func() { cancelBrowser(); cancelAlloc() }}
	// The first Run binds the browser's life to its context, so it gets
	// no deadline; a guard stops a browser that never answers.
	guard := time.AfterFunc(b.opt.timeout, cancelAlloc)
	err = chromedp.Do(bctx)
	if guard.Stop() && err == nil {
		vctx, cancel := context.WithTimeout(bctx, b.opt.timeout)
		defer cancel()
		v, verr := chromedp.Run(vctx, func(ctx context.Context, t *chromedp.Target) (string, error) {
			r, err := cdp.Call(ctx, chromedp.FromContext(ctx).Browser, browser.GetVersion, cdp.Empty{})
			if err != nil {
				return "", err
			}
			return r.Product, nil
		})
		if verr == nil {
			h.version = v
		}
		return h, nil
	}
	h.close()
	if err == nil {
		err = fmt.Errorf("chromium did not start within %s: %w", b.opt.timeout, errTimeout)
	}
	return nil, fmt.Errorf("start chromium (log %s): %w", logf.Name(), err)
}

// dashCells are the results of the dashboard figures at one size.
type dashCells struct {
	first, filter, rerender, heap, peak *result
}

// dashboard measures the repository page at m.n branches, -runs times:
// each run opens the app in a fresh browser context (no cache, no cookies)
// and a floor page of the same origin, alternating which goes first.
func (b *bench) dashboard(ctx context.Context, m *mirrorRun) error {
	if !b.dashAt(m.n) {
		return nil
	}
	c := dashCells{
		first:    b.res.at("dashfirst", m.n),
		filter:   b.res.at("dashfilter", m.n),
		rerender: b.res.at("dashrerender", m.n),
		heap:     b.res.at("dashheap", m.n),
		peak:     b.res.at("dashpeak", m.n),
	}
	all := []*result{c.first, c.filter, c.rerender, c.heap, c.peak}
	if m.sd == nil || m.api == nil {
		err := errors.New("skipped: no server holds the mirror")
		for _, r := range all {
			r.stackd.fail(err)
		}
		return nil
	}
	if _, err := os.Stat(b.opt.chromium); err != nil {
		reason := "no browser: " + b.opt.chromium + " not found"
		for _, r := range all {
			r.stackd.na, r.base.na = reason, reason
		}
		b.logf("dashboard: %s; its figures are n/a", reason)
		return nil
	}
	profile, err := b.stackdDir("dashboard-"+strconv.Itoa(m.n), "profile")
	if err != nil {
		return err
	}
	br, err := b.startChromium(ctx, strconv.Itoa(m.n), profile)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for _, r := range all {
			r.stackd.fail(err)
		}
		b.logf("dashboard: %v", err)
		return nil
	}
	defer br.close()
	if b.browser == "" {
		b.browser = br.version
	}
	b.logf("== dashboard at %s branches (%s)", fmtCount(m.n), br.version)
	appDone := false
	for i := range b.opt.runs {
		for k := range 2 {
			if (k == 0) == (i%2 == 0) {
				if appDone {
					continue
				}
				if err := b.dashApp(ctx, br, m, i, c); err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					b.logf("dashboard run %d: %v", i+1, err)
					// A page that timed out would time out again: the
					// remaining runs of the app are skipped.
					appDone = errors.Is(err, errTimeout)
				}
			} else {
				if err := b.dashFloor(ctx, br, m, i, c); err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					b.logf("dashboard floor run %d: %v", i+1, err)
				}
			}
		}
	}
	return ctx.Err()
}

// tab is one page in a fresh browser context.
type tab struct {
	ctx    context.Context
	cancel func()
	t      *chromedp.Target
}

func (b *bench) openTab(br *headless) (*tab, error) {
	tctx, cancel := chromedp.NewContext(br.ctx, chromedp.WithNewBrowserContext())
	// The first Run binds the tab's life to its context: no deadline, a
	// guard instead.
	guard := time.AfterFunc(b.opt.timeout, cancel)
	err := chromedp.Do(tctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, performance.Enable, performance.EnableParams{})
		return err
	}))
	if !guard.Stop() && err == nil {
		err = fmt.Errorf("no tab within %s: %w", b.opt.timeout, errTimeout)
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open a tab: %w", err)
	}
	return &tab{ctx: tctx, cancel: cancel, t: chromedp.FromContext(tctx).Target}, nil
}

// do runs actions on the tab under the deadline of one measured operation.
func (b *bench) do(tb *tab, actions ...chromedp.Action[chromedp.Void]) error {
	octx, cancel := b.opCtx(tb.ctx)
	defer cancel()
	err := chromedp.Do(octx, actions...)
	if err != nil && octx.Err() != nil {
		return context.Cause(octx)
	}
	return err
}

// eval evaluates a JavaScript expression on the tab (awaiting a promise)
// under the deadline of one measured operation and decodes its value.
func eval[T any](b *bench, tb *tab, expr string) (T, error) {
	octx, cancel := b.opCtx(tb.ctx)
	defer cancel()
	v, err := chromedp.Run(octx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil && octx.Err() != nil {
		return v, context.Cause(octx)
	}
	return v, err
}

// jsCall is the expression that calls the JavaScript function fn with args
// (JSON-encoded).
func jsCall(fn string, args ...any) string {
	enc := make([]string, len(args))
	for i, a := range args {
		raw, err := json.Marshal(a)
		if err != nil {
			panic(err) // strings and numbers only
		}
		enc[i] = string(raw)
	}
	return "(" + fn + ")(" + strings.Join(enc, ", ") + ")"
}

// jsWaitMeasure resolves with the duration (ms) of the k-th measure named
// name, once the page has recorded it.
const jsWaitMeasure = `(name, k) => new Promise((resolve) => {
  const check = () => {
    const e = performance.getEntriesByName(name, "measure");
    if (e.length < k) return false;
    resolve(e[k - 1].duration);
    return true;
  };
  if (check()) return;
  const po = new PerformanceObserver(() => { if (check()) po.disconnect(); });
  po.observe({ type: "measure" });
})`

// jsMeasureCount is how many measures named name the page has recorded.
const jsMeasureCount = `(name) => performance.getEntriesByName(name, "measure").length`

// jsFirstShown checks the page after its first stacks: the list is ready
// and holds stacks and cards.
const jsFirstShown = `() => {
  const list = document.querySelector('[data-testid="stack-list"]');
  return {
    ready: list !== null && list.dataset.ready === "true",
    stacks: document.querySelectorAll('[data-testid="stack"]').length,
    cards: document.querySelectorAll('[data-testid="branch-card"]').length,
  };
}`

// jsScrollCards scrolls the page from top to bottom (a screen at a time
// over the first screens, then in 20 jumps over the whole list, then back
// to the top), waiting two frames at each stop for the lazy list to render
// and drop chunks, and returns the most and the fewest branch cards the DOM
// held at a stop.
const jsScrollCards = `async () => {
  const frame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const cards = () => document.querySelectorAll('[data-testid="branch-card"]').length;
  let most = cards(), least = most, stops = 0;
  const at = async (y) => {
    window.scrollTo(0, y);
    await frame();
    await frame();
    const n = cards();
    most = Math.max(most, n);
    least = Math.min(least, n);
    stops++;
  };
  for (let i = 1; i <= 10; i++) await at(i * window.innerHeight);
  const height = document.documentElement.scrollHeight;
  for (let i = 1; i <= 20; i++) await at((height * i) / 20);
  await at(0);
  return { most, least, stops, height: document.documentElement.scrollHeight };
}`

// jsFetchView times fetch + JSON.parse of the view (no HTTP cache) and
// keeps the parsed view for the filter floor and the heap floor.
const jsFetchView = `async (url) => {
  const t0 = performance.now();
  const r = await fetch(url, { cache: "no-store", credentials: "same-origin" });
  const v = await r.json();
  const ms = performance.now() - t0;
  globalThis.__benchView = v;
  let branches = 1;
  for (const s of v.stacks || []) branches += (s.branches || []).length;
  const res = performance.getEntriesByName(new URL(url, location.href).href, "resource").pop();
  return { ms, status: r.status, branches, bytes: res ? res.decodedBodySize : 0 };
}`

// jsFilterFloor is the floor of a filter keystroke: for each query (the
// same as typed into the app), the branch names of the parsed view that
// contain it, in plain JS, then the next frame (the app's measure also
// ends after the next frame). Durations in ms.
const jsFilterFloor = `async (queries) => {
  const v = globalThis.__benchView;
  const names = [];
  for (const s of v.stacks || []) for (const b of s.branches || []) names.push(b.name.toLowerCase());
  const frame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const out = [];
  let hits = 0;
  await frame();
  for (const q of queries) {
    const t0 = performance.now();
    const ql = q.toLowerCase();
    hits = 0;
    for (const n of names) if (n.includes(ql)) hits++;
    await frame();
    out.push(performance.now() - t0);
  }
  return out;
}`

// filterKeys is what is typed into the filter at n branches: the name of a
// branch two thirds down the repository (each keystroke narrows the list,
// down to that branch), then as many backspaces (back to every stack).
func filterKeys(n int) (typed string, keys []string, queries []string) {
	const depth = 3
	stacks := (n + depth - 1) / depth
	typed = gittest.StackBranch(min(2*stacks/3, stacks-1), 1)
	for i := range typed {
		keys = append(keys, typed[i:i+1])
		queries = append(queries, typed[:i+1])
	}
	for i := len(typed) - 1; i >= 0; i-- {
		keys = append(keys, kb.Backspace)
		queries = append(queries, typed[:i])
	}
	return typed, keys, queries
}

// gcTrace records the garbage collections of the browser's renderers
// (the trace category disabled-by-default-v8.gc, which writes only at a
// collection: nothing is added to the measured work). Between two
// collections the used JS heap only grows, so its peak is the largest used
// size at the start of a collection, or the used size at the end.
type gcTrace struct {
	complete iter.Seq2[tracing.EventTracingComplete, error]
	cancel   context.CancelFunc // ends the subscription
}

// maxTrace bounds the trace read back from the browser (it holds a few
// events per collection).
const maxTrace = 64 << 20

func (b *bench) startGCTrace(tb *tab) (*gcTrace, error) {
	sctx, cancel := context.WithCancel(tb.ctx)
	g := &gcTrace{complete: cdp.Events(sctx, tb.t, tracing.TracingComplete), cancel: cancel} // subscribed from here on
	err := b.do(tb, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, tracing.Start, tracing.StartParams{
			TransferMode: tracing.StartTransferModeReturnAsStream,
			StreamFormat: tracing.StreamFormatJSON,
			TraceConfig: &tracing.TraceConfig{
				IncludedCategories: []string{"disabled-by-default-v8.gc"},
				ExcludedCategories: []string{"*"},
			},
		})
		return err
	}))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("start the GC trace: %w", err)
	}
	return g, nil
}

// stop ends the trace and returns the largest used JS heap at the start
// of a collection of any renderer, with the number of collections, then
// reads the tab's used heap now: the peak is the larger of the two.
func (g *gcTrace) stop(b *bench, tb *tab) (peak float64, gcs int, err error) {
	defer g.cancel()
	err = b.do(tb, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		// The wait for the trace ends with the operation's deadline.
		defer context.AfterFunc(ctx, g.cancel)()
		if _, err := cdp.Call(ctx, t, tracing.End, cdp.Empty{}); err != nil {
			return fmt.Errorf("end: %w", err)
		}
		var handle cdpio.StreamHandle
		for ev, err := range g.complete {
			if err != nil {
				return fmt.Errorf("wait for the trace: %w", err)
			}
			handle = ev.Stream
			break
		}
		if handle == "" {
			return errors.New("the trace has no stream")
		}
		defer func() { _, _ = cdp.Call(ctx, t, cdpio.Close, cdpio.CloseParams{Handle: handle}) }()
		var raw []byte
		for {
			r, err := cdp.Call(ctx, t, cdpio.Read, cdpio.ReadParams{Handle: handle, Size: 1 << 20})
			if err != nil {
				return fmt.Errorf("read the trace: %w", err)
			}
			raw = append(raw, r.Data...)
			if len(raw) > maxTrace {
				return fmt.Errorf("the trace is larger than %d bytes", maxTrace)
			}
			if r.EOF {
				break
			}
		}
		peak, gcs, err = gcPeak(raw)
		if err != nil {
			return err
		}
		u, err := cdp.Call(ctx, t, cdpruntime.GetHeapUsage, cdp.Empty{})
		if err != nil {
			return fmt.Errorf("heap usage: %w", err)
		}
		peak = max(peak, u.UsedSize)
		return nil
	}))
	if err != nil {
		return 0, 0, fmt.Errorf("GC trace: %w", err)
	}
	return peak, gcs, nil
}

// gcPeak reads a JSON trace: V8's V8.GCTraceGCNVP event of each collection
// carries start_object_size, the used heap when the collection started.
func gcPeak(raw []byte) (float64, int, error) {
	var tr struct {
		TraceEvents []struct {
			Name string `json:"name"`
			Args struct {
				Value json.RawMessage `json:"value"`
			} `json:"args"`
		} `json:"traceEvents"`
	}
	if err := json.Unmarshal(raw, &tr); err != nil {
		return 0, 0, fmt.Errorf("trace: %w", err)
	}
	var peak float64
	gcs := 0
	for _, e := range tr.TraceEvents {
		if e.Name != "V8.GCTraceGCNVP" {
			continue
		}
		var text string
		var nvp struct {
			Start *float64 `json:"start_object_size"`
		}
		if json.Unmarshal(e.Args.Value, &text) != nil || json.Unmarshal([]byte(text), &nvp) != nil || nvp.Start == nil {
			return 0, 0, fmt.Errorf("trace: a V8.GCTraceGCNVP event without start_object_size: %.200s", e.Args.Value)
		}
		peak = max(peak, *nvp.Start)
		gcs++
	}
	return peak, gcs, nil
}

// heapAfterGC forces a garbage collection and reads JSHeapUsedSize
// (Performance.getMetrics).
func (b *bench) heapAfterGC(tb *tab) (float64, error) {
	var used float64
	err := b.do(tb, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, heapprofiler.CollectGarbage, cdp.Empty{}); err != nil {
			return fmt.Errorf("collect garbage: %w", err)
		}
		r, err := cdp.Call(ctx, t, performance.GetMetrics, cdp.Empty{})
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		for _, m := range r.Metrics {
			if m.Name == "JSHeapUsedSize" {
				used = m.Value
				return nil
			}
		}
		return errors.New("metrics: no JSHeapUsedSize")
	}))
	return used, err
}

// dashApp is one run of the app: navigation to the first stacks, filter
// keystrokes, a scroll through the list (the card count), a view_updated
// re-render, and the JS heap (after a forced GC, and the peak sampled over
// the whole run).
func (b *bench) dashApp(ctx context.Context, br *headless, m *mirrorRun, i int, c dashCells) error {
	pending := map[*cell]bool{&c.first.stackd: true, &c.filter.stackd: true, &c.rerender.stackd: true, &c.heap.stackd: true, &c.peak.stackd: true}
	failRest := func(err error) error {
		for cl := range pending {
			cl.fail(err)
		}
		return err
	}
	done := func(cl *cell) { delete(pending, cl) }

	tb, err := b.openTab(br)
	if err != nil {
		return failRest(err)
	}
	defer tb.cancel()
	trace, err := b.startGCTrace(tb)
	if err != nil {
		return failRest(err)
	}

	// First stacks: a navigation in a fresh browser context (nothing
	// cached), to the page's stackd:first-stacks measure.
	url := m.sd.base + "/r/" + benchID
	if err := b.do(tb, chromedp.Navigate(url)); err != nil {
		b.res.fact("dashboard showed the first stacks", m.n, false, err.Error())
		return failRest(fmt.Errorf("navigate: %w", err))
	}
	ms, err := eval[float64](b, tb, jsCall(jsWaitMeasure, "stackd:first-stacks", 1))
	if err != nil {
		b.res.fact("dashboard showed the first stacks", m.n, false, err.Error())
		return failRest(fmt.Errorf("first stacks: %w", err))
	}
	shown, err := eval[struct {
		Ready  bool `json:"ready"`
		Stacks int  `json:"stacks"`
		Cards  int  `json:"cards"`
	}](b, tb, jsCall(jsFirstShown))
	if err != nil {
		return failRest(fmt.Errorf("first stacks: %w", err))
	}
	if !shown.Ready || shown.Stacks == 0 || shown.Cards == 0 {
		err := fmt.Errorf("after first stacks: list ready %t, %d stacks, %d cards", shown.Ready, shown.Stacks, shown.Cards)
		b.res.fact("dashboard showed the first stacks", m.n, false, err.Error())
		return failRest(err)
	}
	b.res.fact("dashboard showed the first stacks", m.n, true, "")
	c.first.stackd.add(ms / 1000)
	done(&c.first.stackd)
	msg := fmt.Sprintf("dashboard run %d: first stacks %s (%d stacks, %d cards rendered)", i+1, fmtDuration(msDur(ms)), shown.Stacks, shown.Cards)

	// Filter: one key at a time; each keystroke's measure is awaited
	// before the next key, so that no measure holds two keystrokes.
	typed, keys, _ := filterKeys(m.n)
	if err := b.do(tb, chromedp.Focus(chromedp.CSS(`[data-testid="filter"]`))); err != nil {
		return failRest(fmt.Errorf("filter: %w", err))
	}
	var keyMS []float64
	for _, k := range keys {
		count, err := eval[int](b, tb, jsCall(jsMeasureCount, "stackd:filter"))
		if err == nil {
			err = b.do(tb, chromedp.KeyEvent(k))
		}
		var d float64
		if err == nil {
			d, err = eval[float64](b, tb, jsCall(jsWaitMeasure, "stackd:filter", count+1))
		}
		if err != nil {
			return failRest(fmt.Errorf("filter keystroke %d: %w", len(keyMS)+1, err))
		}
		keyMS = append(keyMS, d)
	}
	for _, d := range keyMS {
		c.filter.stackd.add(d / 1000)
	}
	done(&c.filter.stackd)
	c.filter.stackd.extra = filterExtra(c.filter.stackd.samples)
	msg += fmt.Sprintf(", filter %q: median %s, max %s", typed, fmtDuration(msDur(median(keyMS))), fmtDuration(msDur(slices.Max(keyMS))))

	// Never every card in the DOM: the most cards while scrolling.
	scroll, err := eval[struct {
		Most   int     `json:"most"`
		Least  int     `json:"least"`
		Stops  int     `json:"stops"`
		Height float64 `json:"height"`
	}](b, tb, jsCall(jsScrollCards))
	if err != nil {
		b.res.fact("dashboard held few cards", m.n, false, err.Error())
		return failRest(fmt.Errorf("scroll: %w", err))
	}
	// Every stop shows cards (a list that renders nothing holds few), and
	// never more than the limit.
	limit := min(cardLimit, m.n)
	if scroll.Least > 0 && scroll.Most <= limit {
		b.res.fact("dashboard held few cards", m.n, true, "")
	} else {
		b.res.fact("dashboard held few cards", m.n, false, fmt.Sprintf("%d to %d branch cards in the DOM while scrolling (want 1 to %d)", scroll.Least, scroll.Most, limit))
	}
	msg += fmt.Sprintf(", %d to %d cards in the DOM over %d scroll stops", scroll.Least, scroll.Most, scroll.Stops)

	// Re-render: a new commit on one branch upstream, a sync, and the
	// page's view_updated re-render (refetch included).
	if err := b.do(tb, chromedp.WaitReady(chromedp.CSS(`[data-testid="live-indicator"][data-state="live"]`))); err != nil {
		b.res.fact("dashboard re-rendered the new view", m.n, false, "stream not live: "+err.Error())
		return failRest(fmt.Errorf("live stream: %w", err))
	}
	count, err := eval[int](b, tb, jsCall(jsMeasureCount, "stackd:rerender"))
	if err != nil {
		return failRest(err)
	}
	branch := changeTarget(m.n, i, b.opt.runs)
	old, next, err := b.git.commitOn(ctx, m.upDir, branch, 1000+i)
	if err == nil {
		err = b.git.updateRef(ctx, m.upDir, branch, old, next)
	}
	if err != nil {
		return failRest(fmt.Errorf("change %s upstream: %w", branch, err))
	}
	octx, cancel := b.opCtx(ctx)
	sr, err := m.api.sync(octx, benchID)
	cancel()
	if err == nil && (len(sr.UpdatedRefs) != 1 || sr.UpdatedRefs[0].Ref != "refs/heads/"+branch) {
		err = fmt.Errorf("sync reported %s, want exactly refs/heads/%s", refList(sr.UpdatedRefs), branch)
	}
	if err != nil {
		b.res.fact("dashboard re-rendered the new view", m.n, false, err.Error())
		return failRest(fmt.Errorf("sync: %w", err))
	}
	m.version = viewVersion(sr.ViewVersion)
	d, err := eval[float64](b, tb, jsCall(jsWaitMeasure, "stackd:rerender", count+1))
	if err == nil {
		err = b.do(tb, chromedp.WaitReady(chromedp.CSS(fmt.Sprintf(`[data-testid="stack-list"][data-version="%d"]`, m.version))))
	}
	if err != nil {
		b.res.fact("dashboard re-rendered the new view", m.n, false, err.Error())
		return failRest(fmt.Errorf("re-render: %w", err))
	}
	b.res.fact("dashboard re-rendered the new view", m.n, true, "")
	c.rerender.stackd.add(d / 1000)
	done(&c.rerender.stackd)
	msg += fmt.Sprintf(", re-render %s (version %d)", fmtDuration(msDur(d)), m.version)

	// The heap: its peak over the whole run, then after a forced GC.
	peak, gcs, err := trace.stop(b, tb)
	if err != nil {
		return failRest(err)
	}
	c.peak.stackd.add(peak)
	done(&c.peak.stackd)
	used, err := b.heapAfterGC(tb)
	if err != nil {
		return failRest(fmt.Errorf("heap: %w", err))
	}
	c.heap.stackd.add(used)
	done(&c.heap.stackd)
	b.logf("%s, JS heap peak %s (%d collections), %s after GC", msg, fmtValue(unitBytes, peak), gcs, fmtValue(unitBytes, used))
	return nil
}

// dashFloor is one run of the floors, in a quiet page of the same origin
// (/healthz, no app): fetch + JSON.parse of the view (the floor of first
// stacks and of the re-render), the plain JS filter of its names (the floor
// of a keystroke), and the heap of a page holding the parsed view (after a
// forced GC, and its peak sampled the same way as the app's).
func (b *bench) dashFloor(ctx context.Context, br *headless, m *mirrorRun, i int, c dashCells) error {
	pending := map[*cell]bool{&c.first.base: true, &c.rerender.base: true, &c.filter.base: true, &c.heap.base: true, &c.peak.base: true}
	failRest := func(err error) error {
		for cl := range pending {
			cl.fail(err)
		}
		return err
	}
	tb, err := b.openTab(br)
	if err != nil {
		return failRest(err)
	}
	defer tb.cancel()
	// /healthz answers with the API's Content-Security-Policy
	// (default-src 'none'), which would refuse the floor's fetch: the tab
	// bypasses it (the app's own page allows connect-src 'self').
	if err := b.do(tb, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, page.SetBypassCSP, page.SetBypassCSPParams{Enabled: true})
		return err
	}), chromedp.Navigate(m.sd.base+"/healthz")); err != nil {
		return failRest(fmt.Errorf("navigate: %w", err))
	}
	trace, err := b.startGCTrace(tb)
	if err != nil {
		return failRest(err)
	}
	fv, err := eval[struct {
		MS       float64 `json:"ms"`
		Status   int     `json:"status"`
		Branches int     `json:"branches"`
		Bytes    float64 `json:"bytes"`
	}](b, tb, jsCall(jsFetchView, "/api/v1/repos/"+benchID+"/view"))
	peak, _, perr := trace.stop(b, tb)
	if err == nil && (fv.Status != 200 || fv.Branches != m.n+1) {
		err = fmt.Errorf("view answered %d with %d branches, want 200 with %d", fv.Status, fv.Branches, m.n+1)
	}
	if err != nil {
		return failRest(fmt.Errorf("fetch the view: %w", err))
	}
	c.first.base.add(fv.MS / 1000)
	c.rerender.base.add(fv.MS / 1000)
	delete(pending, &c.first.base)
	delete(pending, &c.rerender.base)
	if perr == nil {
		c.peak.base.add(peak)
		delete(pending, &c.peak.base)
	}

	_, _, queries := filterKeys(m.n)
	fl, err := eval[[]float64](b, tb, jsCall(jsFilterFloor, queries))
	if err == nil && len(fl) != len(queries) {
		err = fmt.Errorf("%d filter timings for %d queries", len(fl), len(queries))
	}
	if err != nil {
		return failRest(fmt.Errorf("filter floor: %w", err))
	}
	for _, d := range fl {
		c.filter.base.add(d / 1000)
	}
	delete(pending, &c.filter.base)
	used, err := b.heapAfterGC(tb)
	if err != nil {
		return failRest(fmt.Errorf("heap floor: %w", err))
	}
	c.heap.base.add(used)
	delete(pending, &c.heap.base)
	if perr != nil {
		return failRest(perr)
	}
	b.logf("dashboard floor run %d: fetch + JSON.parse %s (%s), filter median %s, heap %s after GC, peak %s",
		i+1, fmtDuration(msDur(fv.MS)), fmtValue(unitBytes, fv.Bytes), fmtDuration(msDur(median(fl))), fmtValue(unitBytes, used), fmtValue(unitBytes, peak))
	return nil
}

func msDur(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// filterExtra describes the spread of the keystroke samples.
func filterExtra(samples []float64) string {
	if len(samples) == 0 {
		return ""
	}
	d := make([]time.Duration, len(samples))
	for i, s := range samples {
		d[i] = time.Duration(s * float64(time.Second))
	}
	slices.Sort(d)
	return fmt.Sprintf("p90 %s, max %s, %d keystrokes", fmtDuration(percentile(d, 90)), fmtDuration(d[len(d)-1]), len(d))
}

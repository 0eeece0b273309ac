package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// unit is how a figure's values are measured and printed.
type unit int

const (
	unitSeconds unit = iota // durations, in seconds
	unitRate                // requests per second (higher is better)
	unitBytes               // sizes in bytes
	unitCount               // counts (streams, goroutines, fetches)
	unitShare               // a fraction of a whole, printed as a percentage
)

// targetKind is how a figure is judged.
type targetKind int

const (
	noTarget     targetKind = iota
	ratioAtMost             // stackd / baseline <= limit
	ratioAtLeast            // stackd / baseline >= limit
	atMost                  // stackd value <= limit (in the figure's unit)
	below                   // stackd value < limit
)

// target is the goal of one figure at one size.
type target struct {
	kind  targetKind
	limit float64
}

func (t target) String() string { return t.text(unitSeconds) }

// text prints the target of a figure measured in u.
func (t target) text(u unit) string {
	switch t.kind {
	case ratioAtMost:
		return fmt.Sprintf("≤ %gx", t.limit)
	case ratioAtLeast:
		return fmt.Sprintf("≥ %gx", t.limit)
	case atMost:
		return "≤ " + t.fmtLimit(u)
	case below:
		return "< " + t.fmtLimit(u)
	}
	return "—"
}

func (t target) fmtLimit(u unit) string {
	if u == unitSeconds && t.limit >= 1<<20 { // a size (figures of old tables)
		return fmtValue(unitBytes, t.limit)
	}
	return fmtValue(u, t.limit)
}

// figure is one line of the table (per size), with its baseline, target
// and the step of the harness that measures it (for -only).
type figure struct {
	key      string
	step     string
	name     string
	unit     unit
	baseline string // what the baseline column holds; "" for none
	target   func(size int) target
	info     bool // reported, never judged
	// sizeUnit names what the size counts ("repos", "streams"); "" is
	// branches.
	sizeUnit string
	noGrowth bool // a count that should stay 0: no growth row
}

// minSizeForRatio is where the size-relative targets apply: fixed
// costs dominate small repositories.
const minSizeForRatio = 10_000

// growthTolerance is how much faster than the ref count a figure may grow
// from the smallest to the largest size and still count as linear.
const growthTolerance = 1.2

func atLeastSize(limit int, t target) func(int) target {
	return func(n int) target {
		if n >= limit {
			return t
		}
		return target{}
	}
}

func always(t target) func(int) target { return func(int) target { return t } }

// figures in table order.
var figures = []figure{
	{key: "onboard", step: "onboard", name: "onboarding to first view", unit: unitSeconds, baseline: "`git clone --mirror`",
		target: atLeastSize(minSizeForRatio, target{ratioAtMost, 1.5})},
	{key: "noop", step: "noop", name: "no-op sync", unit: unitSeconds, baseline: "`git ls-remote`",
		target: atLeastSize(minSizeForRatio, target{ratioAtMost, 1.0})},
	{key: "changed", step: "changed", name: "one changed branch", unit: unitSeconds, baseline: "`git fetch --prune`, twin mirror",
		target: atLeastSize(minSizeForRatio, target{ratioAtMost, 0.6})},
	{key: "get", step: "get", name: "`GET .../view`", unit: unitRate, baseline: "plain `net/http`, same bytes",
		target: always(target{ratioAtLeast, 0.8})},
	{key: "getgz", step: "get", name: "`GET .../view`, gzip", unit: unitRate, baseline: "plain `net/http`, same bytes",
		target: always(target{}), info: true},
	{key: "rss", step: "get", name: "peak RSS after the GET load", unit: unitBytes,
		target: func(n int) target {
			if n <= 10_000 {
				return target{atMost, 150 << 20}
			}
			return target{atMost, 500 << 20}
		}},
	{key: "disk", step: "disk", name: "mirror on disk", unit: unitBytes, baseline: "git's twin",
		target: always(target{ratioAtMost, 1.5})},
	{key: "restart", step: "restart", name: "restart to full view", unit: unitSeconds,
		target: always(target{atMost, 5})},
	{key: "fullbuild", step: "onboard", name: "full view build (log)", unit: unitSeconds,
		target: func(n int) target {
			if n <= 10_000 {
				return target{below, 1}
			}
			return target{}
		}},
	{key: "incbuild", step: "changed", name: "incremental rebuild (log)", unit: unitSeconds, baseline: "full view build",
		target: atLeastSize(minSizeForRatio, target{ratioAtMost, 0.05})},
	{key: "wtcold", step: "worktree", name: "working repo: cold re-read", unit: unitSeconds, baseline: "`git for-each-ref`",
		target: always(target{below, 0.5})},
	{key: "wtreread", step: "worktree", name: "working repo: re-read after a commit", unit: unitSeconds, baseline: "`git for-each-ref`",
		target: always(target{below, 0.5})},
	{key: "watcher", step: "watcher", name: "watcher: commit to view", unit: unitSeconds,
		target: always(target{atMost, 0.5})},
	{key: "diff", step: "diff", name: "branch diff: CPU time", unit: unitSeconds, baseline: "`git diff`, CPU time",
		target: always(target{atMost, 2})},
	{key: "dashfirst", step: "dashboard", name: "dashboard: first stacks", unit: unitSeconds, baseline: "`fetch` + `JSON.parse` of the view, same browser",
		target: func(n int) target {
			if n <= 10_000 {
				return target{atMost, 1}
			}
			return target{atMost, 3}
		}},
	{key: "dashfilter", step: "dashboard", name: "dashboard: filter keystroke", unit: unitSeconds, baseline: "plain JS filter of the names + next frame",
		target: always(target{atMost, 0.1})},
	{key: "dashrerender", step: "dashboard", name: "dashboard: `view_updated` re-render", unit: unitSeconds, baseline: "`fetch` + `JSON.parse` of the view, same browser",
		target: func(n int) target {
			if n <= 10_000 {
				return target{atMost, 0.2}
			}
			return target{}
		}},
	{key: "dashheap", step: "dashboard", name: "dashboard: JS heap after GC", unit: unitBytes, baseline: "a page holding only the parsed view",
		target: always(target{atMost, 200 << 20})},
	{key: "dashpeak", step: "dashboard", name: "dashboard: JS heap peak", unit: unitBytes, baseline: "the same page's fetch + parse",
		target: always(target{atMost, 200 << 20})},
}

func figureByKey(key string) *figure {
	for i := range figures {
		if figures[i].key == key {
			return &figures[i]
		}
	}
	panic("unknown figure " + key)
}

// cell is the samples of one side (stackd or baseline) of one figure at one
// size. A cell with no samples shows its error or its n/a reason.
type cell struct {
	samples []float64
	runs    int    // attempted runs
	err     string // the last failure ("timeout", "error: ...")
	na      string // why the figure does not apply ("no log line")
	extra   string // printed after the value (latency percentiles)
}

func (c *cell) add(v float64) { c.samples = append(c.samples, v); c.runs++ }

func (c *cell) fail(err error) {
	c.runs++
	c.err = failText(err)
}

func (c *cell) ok() bool { return len(c.samples) > 0 }

func (c *cell) value() float64 { return median(c.samples) }

func (c *cell) text(u unit) string {
	switch {
	case c.ok():
		s := fmtValue(u, c.value())
		if c.extra != "" {
			s += " (" + c.extra + ")"
		}
		if len(c.samples) < c.runs {
			s += fmt.Sprintf(" [%d/%d runs; %s]", len(c.samples), c.runs, c.err)
		}
		return s
	case c.err != "":
		return c.err
	case c.na != "":
		return "n/a (" + c.na + ")"
	}
	return "n/a"
}

// result is one figure at one size.
type result struct {
	stackd, base cell
}

// results collects every measurement of a run, safe for the progress
// printer and the measurements to share.
type results struct {
	mu    sync.Mutex
	cells map[string]map[int]*result // figure key -> size
	sizes map[string]string          // size label override (the working repository)
	facts []fact
}

// fact is a functional check recorded by a measurement (onboarding answered
// 201, a no-op sync changed nothing...): the smoke test asserts them.
type fact struct {
	name string
	size int
	ok   bool
	note string
}

func newResults() *results {
	return &results{cells: map[string]map[int]*result{}, sizes: map[string]string{}}
}

// at returns the result of figure key at size n, creating it.
func (r *results) at(key string, n int) *result {
	r.mu.Lock()
	defer r.mu.Unlock()
	figureByKey(key)
	m := r.cells[key]
	if m == nil {
		m = map[int]*result{}
		r.cells[key] = m
	}
	if m[n] == nil {
		m[n] = &result{}
	}
	return m[n]
}

// peek returns the result of figure key at size n, or an empty one
// (not added to the table) when nothing was measured.
func (r *results) peek(key string, n int) result {
	r.mu.Lock()
	defer r.mu.Unlock()
	if res := r.cells[key][n]; res != nil {
		return *res
	}
	return result{}
}

// label names the size of figure key in the table (instead of "N branches").
func (r *results) label(key, text string) {
	r.mu.Lock()
	r.sizes[key] = text
	r.mu.Unlock()
}

func (r *results) fact(name string, n int, ok bool, note string) {
	r.mu.Lock()
	r.facts = append(r.facts, fact{name: name, size: n, ok: ok, note: note})
	r.mu.Unlock()
}

// row is one printed line of the table.
type row struct {
	figure, size, stackd, baseline, ratio, target, result string
	step                                                  string // of the figure: the fleet rows go to their own section
	key                                                   string // of the figure
	n                                                     int    // the size; a growth row's largest
	growth                                                bool   // a growth row
}

// rows renders the table: every figure that ran, one line per size, then
// its growth from the smallest to the largest size. smoke prints "smoke"
// instead of judging timings.
func (r *results) rows(smoke bool) []row {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []row
	for _, f := range figures {
		m := r.cells[f.key]
		if len(m) == 0 {
			continue
		}
		sizes := make([]int, 0, len(m))
		for n := range m {
			sizes = append(sizes, n)
		}
		slices.Sort(sizes)
		for _, n := range sizes {
			res := m[n]
			rw := row{figure: f.name, size: r.sizeLabel(f.key, n), stackd: res.stackd.text(f.unit), baseline: "—", ratio: "—", step: f.step, key: f.key, n: n}
			if f.baseline != "" {
				rw.baseline = res.base.text(f.unit) + baselineNote(f)
			}
			ratio, hasRatio := 0.0, false
			if f.baseline != "" && res.stackd.ok() && res.base.ok() && res.base.value() > 0 {
				ratio, hasRatio = res.stackd.value()/res.base.value(), true
				rw.ratio = fmtRatio(ratio)
			}
			t := f.target(n)
			rw.target = t.text(f.unit)
			rw.result = judge(f, t, &res.stackd, ratio, hasRatio, smoke)
			out = append(out, rw)
		}
		if len(sizes) >= 2 && !f.noGrowth {
			out = append(out, r.growthRow(f, sizes, smoke))
		}
	}
	return out
}

func baselineNote(f figure) string { return "<br>" + f.baseline }

func (r *results) sizeLabel(key string, n int) string {
	if l, ok := r.sizes[key]; ok {
		return l
	}
	if u := figureByKey(key).sizeUnit; u != "" {
		return fmtCount(n) + " " + u
	}
	return fmtCount(n) + " branches"
}

func judge(f figure, t target, stackd *cell, ratio float64, hasRatio, smoke bool) string {
	if !stackd.ok() {
		if stackd.err != "" {
			return "error"
		}
		return "n/a"
	}
	if f.info || t.kind == noTarget {
		return "—"
	}
	if smoke {
		return "smoke"
	}
	v := stackd.value()
	var pass bool
	switch t.kind {
	case ratioAtMost, ratioAtLeast:
		if !hasRatio {
			return "n/a"
		}
		pass = ratio <= t.limit
		if t.kind == ratioAtLeast {
			pass = ratio >= t.limit
		}
	case atMost:
		pass = v <= t.limit
	case below:
		pass = v < t.limit
	}
	if pass {
		return "pass"
	}
	return "**FAIL**"
}

// cost turns a value into something that grows with the work: time and
// bytes as they are, throughput as time per request.
func cost(u unit, v float64) float64 {
	if u == unitRate {
		return 1 / v
	}
	return v
}

func (r *results) growthRow(f figure, sizes []int, smoke bool) row {
	lo, hi := sizes[0], sizes[len(sizes)-1]
	refs := float64(hi) / float64(lo)
	a, b := r.cells[f.key][lo], r.cells[f.key][hi]
	rw := row{
		figure:   f.name + ": growth",
		size:     fmtCount(lo) + " → " + fmtCount(hi),
		stackd:   "n/a",
		baseline: "—",
		ratio:    growthBasis(f) + " " + fmtGrowth(refs),
		step:     f.step,
		key:      f.key,
		n:        hi,
		growth:   true,
		target:   "≤ " + fmtGrowth(refs*growthTolerance),
		result:   "n/a",
	}
	if f.unit == unitRate {
		rw.figure += " (time per request)"
	}
	if a.stackd.ok() && b.stackd.ok() {
		g := cost(f.unit, b.stackd.value()) / cost(f.unit, a.stackd.value())
		rw.stackd = fmtGrowth(g)
		switch {
		case smoke:
			rw.result = "smoke"
		case g <= refs*growthTolerance:
			rw.result = "pass"
		default:
			rw.result = "**FAIL**"
		}
	} else if a.stackd.err != "" || b.stackd.err != "" {
		rw.result = "error"
	}
	if f.baseline != "" && a.base.ok() && b.base.ok() {
		rw.baseline = fmtGrowth(cost(f.unit, b.base.value())/cost(f.unit, a.base.value())) + baselineNote(f)
	}
	return rw
}

// growthBasis names what the size of f counts, in a growth row.
func growthBasis(f figure) string {
	if f.sizeUnit != "" {
		return f.sizeUnit
	}
	return "refs"
}

// markdown renders rows as one Markdown table.
func markdown(rows []row) string {
	var b strings.Builder
	b.WriteString("| figure | size | stackd | baseline | ratio | target | result |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.figure, r.size, r.stackd, r.baseline, r.ratio, r.target, r.result)
	}
	return b.String()
}

// plain renders rows as an aligned text table for the terminal.
func plain(rows []row) string {
	all := append([]row{{figure: "figure", size: "size", stackd: "stackd", baseline: "baseline", ratio: "ratio", target: "target", result: "result"}}, rows...)
	cols := func(r row) []string {
		return []string{r.figure, r.size, r.stackd, strings.ReplaceAll(r.baseline, "<br>", " · "), r.ratio, r.target, r.result}
	}
	width := make([]int, 7)
	for _, r := range all {
		for i, c := range cols(r) {
			width[i] = max(width[i], len([]rune(strings.ReplaceAll(c, "`", ""))))
		}
	}
	var b strings.Builder
	for k, r := range all {
		for i, c := range cols(r) {
			c = strings.ReplaceAll(c, "`", "")
			c = strings.ReplaceAll(c, "**", "")
			if i < 6 {
				c += strings.Repeat(" ", width[i]-len([]rune(c))+2)
			}
			b.WriteString(c)
		}
		b.WriteString("\n")
		if k == 0 {
			b.WriteString(strings.Repeat("-", sum(width)+12) + "\n")
		}
	}
	return b.String()
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func fmtValue(u unit, v float64) string {
	switch u {
	case unitRate:
		return fmt.Sprintf("%.0f req/s", v)
	case unitCount:
		return fmtCount(int(math.Round(v)))
	case unitShare:
		return fmt.Sprintf("%.0f%%", 100*v)
	case unitBytes:
		mb := v / (1 << 20)
		if mb < 1 && v > 0 {
			return fmt.Sprintf("%.1f KB", v/1024)
		}
		if mb < 10 {
			return fmt.Sprintf("%.2f MB", mb)
		}
		return fmt.Sprintf("%.0f MB", mb)
	}
	return fmtDuration(time.Duration(v * float64(time.Second)))
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func fmtRatio(r float64) string {
	switch {
	case r < 0.1:
		return fmt.Sprintf("%.3fx", r)
	case r < 10:
		return fmt.Sprintf("%.2fx", r)
	case r < 100:
		return fmt.Sprintf("%.1fx", r)
	}
	return fmt.Sprintf("%.0fx", r)
}

func fmtGrowth(g float64) string {
	if g < 10 {
		return fmt.Sprintf("%.1fx", g)
	}
	return fmt.Sprintf("%.0fx", g)
}

// fmtCount prints n with thousands separators.
func fmtCount(n int) string {
	s := strconv.Itoa(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// machine describes the host for the document's header.
func machine(stackdBin string) []string {
	cpu := "unknown CPU"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(raw)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "unknown"
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(raw)) {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64); err == nil {
					mem = fmt.Sprintf("%.1f GB", kb/(1<<20))
				}
			}
		}
	}
	kernel := "unknown"
	if raw, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(raw))
	}
	out := func(name string, args ...string) string {
		b, err := exec.Command(name, args...).Output()
		if err != nil {
			return "unknown"
		}
		return strings.TrimSpace(string(b))
	}
	return []string{
		fmt.Sprintf("machine: %s, %d cores, %s memory, Linux %s", cpu, runtime.NumCPU(), mem, kernel),
		fmt.Sprintf("software: %s (harness), %s, %s", runtime.Version(), out("git", "--version"), out(stackdBin, "version")),
	}
}

// failText is the short form of a failure for a table cell.
func failText(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, errTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return "error: " + strings.ReplaceAll(s, "|", "/")
}

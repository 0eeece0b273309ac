package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackd/stackd/impl/stackdbin"
)

// TestMain lets the test binary stand in for the harness binary as the
// plain byte server (the harness starts "<self> serve-bytes ...").
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "serve-bytes" || os.Args[1] == "serve-sse") {
		serve := serveBytes
		if os.Args[1] == "serve-sse" {
			serve = serveSSE
		}
		if err := serve(os.Args[2:]); err != nil {
			os.Stderr.WriteString(os.Args[1] + ": " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// buildStackd builds the server from this module into a temporary
// directory, with the race detector when this test has it (the packages
// are then shared with the rest of `go test -race ./...` in the build
// cache).
func buildStackd(t *testing.T) string { return stackdbin.Path(t, raceEnabled) }

func requireGitDaemon(t *testing.T) {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Skipf("git is not available: %v", err)
	}
	if _, err := os.Stat(filepath.Join(strings.TrimSpace(string(out)), "git-daemon")); err != nil {
		t.Skipf("git daemon is not available: %v", err)
	}
}

// haveBrowser reports whether the dashboard figures can be measured:
// chromium is installed, or STACKD_BROWSER=require (.ci/run) fails the test
// without it.
func haveBrowser(t *testing.T, path string) bool {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("STACKD_BROWSER") == "require" {
			t.Fatalf("chromium not installed, and STACKD_BROWSER=require (.ci/run): %v", err)
		}
		t.Logf("chromium not installed (%v): the dashboard figures are checked to be n/a", err)
		return false
	}
	return true
}

// TestSmoke runs the whole harness in smoke mode against a freshly built
// server and checks functional facts only: every figure has its rows, the
// onboarding answered 201, a no-op sync updated nothing, the changed
// branch was reported, the watcher saw the commit and the restart served
// the full view, the diff was answered, and in headless Chromium the
// dashboard showed the first stacks, held a bounded number of cards while
// scrolling and re-rendered the new view after a sync. The fleet step
// (tens of repositories, hundreds of streams, a short webhook storm)
// onboarded every repository, swept them without a change, served every
// view after a restart, delivered a view_updated to every stream, answered
// every delivery 202/204 and lost no push. It asserts no timing.
func TestSmoke(t *testing.T) {
	requireGitDaemon(t)
	bin := buildStackd(t)
	opt, err := parseFlags([]string{"-smoke", "-stackd", bin, "-work", t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	browser := haveBrowser(t, opt.chromium)
	if opt.out != "" {
		t.Fatalf("smoke mode writes %q without -out", opt.out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // failure guard
	defer cancel()
	var stdout, progress bytes.Buffer
	res, err := run(ctx, opt, []string{os.Args[0]}, &stdout, &progress)
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("table:\n%s", stdout.String())

	mirrorSizes := opt.sizes
	worktree := []int{opt.worktree.Branches}
	logged := map[string]bool{"fullbuild": true, "incbuild": true, "wtcold": true} // need the server's "view built" line
	for _, f := range figures {
		sizes := mirrorSizes
		switch {
		case f.step == "worktree":
			sizes = worktree
		case f.step == "diff":
			sizes = []int{diffLines}
		case f.sizeUnit == "repos":
			sizes = opt.fleet.repos
		case f.sizeUnit == "streams":
			sizes = opt.fleet.streams
		}
		for _, n := range sizes {
			r := res.cells[f.key][n]
			if r == nil {
				t.Errorf("%s at %d: no result", f.key, n)
				continue
			}
			noBrowser := f.step == "dashboard" && !browser
			switch {
			case noBrowser:
				if r.stackd.ok() || !strings.Contains(r.stackd.na, "no browser") {
					t.Errorf("%s at %d without chromium: %s, want n/a (no browser)", f.key, n, r.stackd.text(f.unit))
				}
			case r.stackd.ok():
			case logged[f.key] && r.stackd.na == noBuildLog:
			case f.key == "getgz" && r.stackd.na != "":
			case (f.key == "fleftgr" || f.key == "fstormfetch") && r.stackd.na != "": // a server without the metric
			default:
				t.Errorf("%s at %d: stackd: %s", f.key, n, r.stackd.text(f.unit))
			}
			if f.baseline != "" && f.key != "incbuild" && f.key != "getgz" && !noBrowser && !r.base.ok() {
				t.Errorf("%s at %d: baseline: %s", f.key, n, r.base.text(f.unit))
			}
		}
	}
	for _, rw := range res.rows(true) {
		if rw.result == "error" || strings.Contains(rw.result, "FAIL") {
			t.Errorf("row %s %s: %s", rw.figure, rw.size, rw.result)
		}
	}

	want := map[string][]int{
		"onboard answered 201":            mirrorSizes,
		"no-op sync updated nothing":      mirrorSizes,
		"changed branch reported":         mirrorSizes,
		"restart served the full view":    mirrorSizes,
		"watcher saw the commit":          mirrorSizes,
		"re-read reported the commit":     worktree,
		"fleet onboarded":                 opt.fleet.repos,
		"fleet sweep updated nothing":     opt.fleet.repos,
		"fleet restart served every view": opt.fleet.repos,
		"storm answered 202/204":          opt.fleet.repos,
		"storm lost no push":              opt.fleet.repos,
		"fan-out reached every stream":    opt.fleet.streams,
	}
	if browser {
		want["dashboard showed the first stacks"] = mirrorSizes
		want["dashboard held few cards"] = mirrorSizes
		want["dashboard re-rendered the new view"] = mirrorSizes
	}
	seen := map[string]map[int]bool{}
	for _, f := range res.facts {
		if !f.ok {
			t.Errorf("%s at %d: %s", f.name, f.size, f.note)
		}
		if seen[f.name] == nil {
			seen[f.name] = map[int]bool{}
		}
		seen[f.name][f.size] = true
	}
	for name, sizes := range want {
		for _, n := range sizes {
			if !seen[name][n] {
				t.Errorf("%s at %d: never checked", name, n)
			}
		}
	}
	if !strings.Contains(stdout.String(), "smoke") {
		t.Errorf("the table judges timings in smoke mode:\n%s", stdout.String())
	}
}

// TestDashboardNoBrowser: without a browser the dashboard step records its
// figures as n/a with the reason, and the run goes on without an error.
func TestDashboardNoBrowser(t *testing.T) {
	requireGitDaemon(t)
	bin := buildStackd(t)
	missing := filepath.Join(t.TempDir(), "no-chromium")
	opt, err := parseFlags([]string{"-smoke", "-sizes", "30", "-only", "dashboard", "-chromium", missing, "-stackd", bin, "-work", t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // failure guard
	defer cancel()
	var stdout, progress bytes.Buffer
	res, err := run(ctx, opt, []string{os.Args[0]}, &stdout, &progress)
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, f := range figures {
		r := res.cells[f.key][30]
		if f.step != "dashboard" {
			if r != nil {
				t.Errorf("%s measured with -only dashboard", f.key)
			}
			continue
		}
		if r == nil {
			t.Errorf("%s: no result", f.key)
			continue
		}
		for side, c := range map[string]cell{"stackd": r.stackd, "baseline": r.base} {
			if c.ok() || !strings.Contains(c.na, "no browser") || !strings.Contains(c.na, missing) {
				t.Errorf("%s %s: %s, want n/a naming the missing browser", f.key, side, c.text(f.unit))
			}
		}
	}
	for _, rw := range res.rows(true) {
		if rw.result != "n/a" {
			t.Errorf("row %s %s: %s, want n/a", rw.figure, rw.size, rw.result)
		}
	}
	if !strings.Contains(stdout.String(), "n/a (no browser") {
		t.Errorf("the table does not say why:\n%s", stdout.String())
	}
}

// TestFilterKeys: the typed name exists, the keystrokes narrow to it and
// come back to the empty filter.
func TestFilterKeys(t *testing.T) {
	for _, n := range []int{30, 31, 120, 10_000, 50_000} {
		typed, keys, queries := filterKeys(n)
		var s, level int
		if _, err := fmt.Sscanf(typed, "st%05d-%d", &s, &level); err != nil || s*3+level > n {
			t.Errorf("n=%d: %s does not exist", n, typed)
		}
		if len(keys) != 2*len(typed) || len(queries) != len(keys) {
			t.Errorf("n=%d: %d keys, %d queries for %q", n, len(keys), len(queries), typed)
			continue
		}
		if queries[len(typed)-1] != typed || queries[len(queries)-1] != "" {
			t.Errorf("n=%d: queries %q", n, queries)
		}
	}
}

// TestGCPeak reads the largest start_object_size of V8's GC events.
func TestGCPeak(t *testing.T) {
	nvp := func(start int) string {
		v, _ := json.Marshal(fmt.Sprintf(`{"pause":1.2,"gc":"s","start_object_size":%d,"end_object_size":10}`, start))
		return `{"name":"V8.GCTraceGCNVP","cat":"disabled-by-default-v8.gc","args":{"value":` + string(v) + `}}`
	}
	raw := `{"traceEvents":[` + nvp(100) + `,{"name":"ObservablePause","args":{}},{"name":"Other","args":{"value":{"x":1}}},` + nvp(300) + `,` + nvp(200) + `]}`
	peak, gcs, err := gcPeak([]byte(raw))
	if err != nil || peak != 300 || gcs != 3 {
		t.Errorf("gcPeak = %v, %d, %v; want 300, 3, nil", peak, gcs, err)
	}
	if _, _, err := gcPeak([]byte(`{"traceEvents":[{"name":"V8.GCTraceGCNVP","args":{"value":"{}"}}]}`)); err == nil {
		t.Error("an NVP event without start_object_size was accepted")
	}
}

// TestWriteDoc replaces the generated section and keeps the rest.
func TestWriteDoc(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := os.WriteFile(path, []byte("# Benchmarks\n\nIntro.\n\n## Micro\n\nkept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	section := func(s string) string { return beginMark + "\n" + s + "\n" + endMark + "\n" }
	if err := writeDoc(path, section("first")); err != nil {
		t.Fatal(err)
	}
	if err := writeDoc(path, section("second")); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "# Benchmarks\n\n" + section("second") + "\nIntro.\n\n## Micro\n\nkept\n"
	if string(raw) != want {
		t.Errorf("document:\n%s\nwant:\n%s", raw, want)
	}
}

// TestChangeTarget: every run changes a different, existing branch.
func TestChangeTarget(t *testing.T) {
	for _, c := range []struct{ n, runs int }{{30, 1}, {30, 5}, {60, 5}, {1000, 5}, {2000, 7}, {50_000, 5}, {31, 5}, {32, 5}} {
		seen := map[string]bool{}
		for i := range c.runs {
			b := changeTarget(c.n, i, c.runs)
			if seen[b] {
				t.Errorf("n=%d runs=%d: %s twice", c.n, c.runs, b)
			}
			seen[b] = true
			var s, level int
			if _, err := fmt.Sscanf(b, "st%05d-%d", &s, &level); err != nil || s*3+level > c.n {
				t.Errorf("n=%d runs=%d: %s does not exist", c.n, c.runs, b)
			}
		}
	}
}

// TestQuietWindows: a window ends at a pause of the debounce or when it has
// lasted the longest delay.
func TestQuietWindows(t *testing.T) {
	at := func(ms ...int) []time.Time {
		base := time.Unix(0, 0)
		out := make([]time.Time, len(ms))
		for i, m := range ms {
			out[i] = base.Add(time.Duration(m) * time.Millisecond)
		}
		return out
	}
	for _, c := range []struct {
		name  string
		times []time.Time
		want  int
	}{
		{"none", nil, 0},
		{"one", at(0), 1},
		{"burst", at(0, 100, 200, 300), 1},
		{"pause", at(0, 100, 2100, 2200), 2},
		{"just under the pause", at(0, 1999), 1},
		{"steady past the longest delay", at(0, 1000, 2000-1, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 11000), 2},
	} {
		if got := quietWindows(c.times, 2*time.Second, 10*time.Second); got != c.want {
			t.Errorf("%s: %d windows, want %d", c.name, got, c.want)
		}
	}
}

// TestMetricSum reads samples by name and labels, not by prefix alone.
func TestMetricSum(t *testing.T) {
	text := `# HELP stackd_sync_runs_total x
stackd_sync_runs_total{mode="full",outcome="ok",trigger="interval"} 3
stackd_sync_runs_total{mode="noop",outcome="ok",trigger="interval"} 4
stackd_sync_runs_total{mode="noop",outcome="ok",trigger="api"} 5
stackd_sync_runs_total_other 100
go_goroutines 17
stackd_mirror_upload_pack_sessions_total{repo="r0001"} 2
stackd_mirror_upload_pack_sessions_total{repo="r0002"} 1
`
	if got := metricSum(text, "stackd_sync_runs_total", `trigger="interval"`); got != 7 {
		t.Errorf("interval runs %v, want 7", got)
	}
	if got := metricSum(text, "stackd_sync_runs_total"); got != 12 {
		t.Errorf("all runs %v, want 12", got)
	}
	if got := metricSum(text, "go_goroutines"); got != 17 {
		t.Errorf("goroutines %v, want 17", got)
	}
	got := metricByLabel(text, "stackd_mirror_upload_pack_sessions_total", "repo")
	if len(got) != 2 || got["r0001"] != 2 || got["r0002"] != 1 {
		t.Errorf("sessions by repo %v", got)
	}
}

// TestWriteFleetDoc: the fleet section goes after the other generated
// section, is replaced in place, and leaves the rest alone.
func TestWriteFleetDoc(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	main := beginMark + "\nmain\n" + endMark + "\n"
	if err := os.WriteFile(path, []byte("# Benchmarks\n\n"+main+"\n## Micro\n\nkept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	section := func(s string) string { return fleetBeginMark + "\n" + s + "\n" + fleetEndMark + "\n" }
	if err := writeFleetDoc(path, section("first")); err != nil {
		t.Fatal(err)
	}
	if err := writeFleetDoc(path, section("second")); err != nil {
		t.Fatal(err)
	}
	if err := writeDoc(path, beginMark+"\nmain2\n"+endMark+"\n"); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "# Benchmarks\n\n" + beginMark + "\nmain2\n" + endMark + "\n\n" + section("second") + "\n## Micro\n\nkept\n"
	if string(raw) != want {
		t.Errorf("document:\n%s\nwant:\n%s", raw, want)
	}
}

// TestFleetCommits: the harness's loose commits are what git reads.
func TestFleetCommits(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("git", "init", "-q", "--bare", dir).CombinedOutput(); err != nil {
		t.Skipf("git init: %v %s", err, out)
	}
	tree := "4b825dc642cb6eb9a060e54bf8d69288fbee4904" // the empty tree
	if err := writeLoose(dir, tree, []byte("tree 0\x00")); err != nil {
		t.Fatal(err)
	}
	parent, raw := looseCommit("", tree, "root", 1)
	if err := writeLoose(dir, parent, raw); err != nil {
		t.Fatal(err)
	}
	sha, raw := looseCommit(parent, tree, "child", 2)
	if err := writeLoose(dir, sha, raw); err != nil {
		t.Fatal(err)
	}
	if err := writeRef(dir, "refs/heads/x", sha); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", dir, "log", "--format=%H %P %s", "-n", "1", "x").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := sha + " " + parent + " child\n"; string(out) != want {
		t.Errorf("git log: %q, want %q", out, want)
	}
}

// TestFleetSummary: the line after the fleet table says every fleet
// target met only when every judged row passed and every target was
// measured at the issue's sizes (1,000 repositories, 10,000 streams, and
// the growth up to them); otherwise it names each one not met.
func TestFleetSummary(t *testing.T) {
	// fill records a value meeting each fleet target at the sizes of its
	// unit (twice the same value: a growth of 1x), then lets edit change
	// some.
	fill := func(repos, streams []int, edit func(*results)) []row {
		r := newResults()
		for _, f := range fleetFigures {
			sizes := repos
			if f.sizeUnit == "streams" {
				sizes = streams
			}
			for _, n := range sizes {
				res := r.at(f.key, n)
				v := 1.0
				switch t := f.target(issueSize(f)); t.kind {
				case ratioAtMost:
					v = t.limit / 2
				case atMost:
					v = t.limit / 2
				}
				res.stackd.add(v)
				res.base.add(1)
			}
		}
		if edit != nil {
			edit(r)
		}
		return r.rows(false)
	}
	full, fullStreams := []int{100, issueRepos}, []int{1000, issueStreams}
	all := fleetSummary(fill(full, fullStreams, nil), false)
	var total int
	if _, err := fmt.Sscanf(all, "fleet targets: all %d met", &total); err != nil || total == 0 {
		t.Fatalf("every target met and measured: %q", all)
	}

	cpu := figureByKey("fcpu").name
	for _, c := range []struct {
		name    string
		rows    []row
		smoke   bool
		want    string   // prefix
		failing []string // each named, in order
	}{
		{name: "one over its target at 1,000", rows: fill(full, fullStreams, func(r *results) {
			r.at("fcpu", issueRepos).stackd.samples[0] = 0.6
		}), want: fmt.Sprintf("fleet targets: %d of %d met; failing: %s (1,000 repos)", total-1, total, cpu)},
		{name: "one failed measurement", rows: fill(full, fullStreams, func(r *results) {
			res := r.at("flist", issueRepos)
			res.stackd = cell{}
			res.stackd.fail(errTimeout)
		}), want: fmt.Sprintf("fleet targets: %d of %d met; failing: ", total-2, total),
			failing: []string{figureByKey("flist").name + " (1,000 repos)", figureByKey("flist").name + ": growth (100 → 1,000)"}},
		{name: "a count over its target", rows: fill(full, fullStreams, func(r *results) {
			r.at("fleftfd", issueStreams).stackd.samples[0] = 3
		}), want: fmt.Sprintf("fleet targets: %d of %d met; failing: ", total-1, total),
			failing: []string{figureByKey("fleftfd").name + " (10,000 streams)"}},
		{name: "reduced sizes, every row met", rows: fill([]int{20, 100}, []int{100, 1000}, nil),
			want: "fleet targets: ",
			failing: []string{
				figureByKey("fonboard").name + " (1,000 repos: not measured)",
				figureByKey("fonboard").name + ": growth (to 1,000 repos: not measured)",
				figureByKey("fspread").name + " (1,000 repos: not measured)",
				figureByKey("frss").name + " (1,000 repos: not measured)",
				figureByKey("frepomem").name + ": growth (to 1,000 repos: not measured)",
				figureByKey("fdeliver").name + " (10,000 streams: not measured)",
				figureByKey("fleftfd").name + " (10,000 streams: not measured)",
			}},
		{name: "smoke", rows: fill([]int{10, 20}, []int{100, 200}, nil), smoke: true, want: "fleet targets: not judged (smoke run)"},
	} {
		got := fleetSummary(c.rows, c.smoke)
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want it to start with %q", c.name, got, c.want)
			continue
		}
		if strings.Contains(got, " all ") {
			t.Errorf("%s: %q says all met", c.name, got)
		}
		rest := got
		for _, f := range c.failing {
			i := strings.Index(rest, f)
			if i < 0 {
				t.Errorf("%s: %q does not name %q (after the previous ones)", c.name, got, f)
				break
			}
			rest = rest[i+len(f):]
		}
	}
	// The reduced run's rows all passed; only the unmeasured are named.
	reduced := fleetTargets(fill([]int{20, 100}, []int{100, 1000}, nil))
	for _, c := range reduced {
		if c.met == strings.Contains(c.name, "not measured") {
			t.Errorf("reduced run: %q met=%v", c.name, c.met)
		}
	}
}

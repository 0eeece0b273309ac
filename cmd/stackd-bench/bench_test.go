package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the harness binary as the
// plain byte server (the harness starts "<self> serve-bytes ...").
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "serve-bytes" {
		if err := serveBytes(os.Args[2:]); err != nil {
			os.Stderr.WriteString("serve-bytes: " + err.Error() + "\n")
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
func buildStackd(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "stackd")
	args := []string{"build"}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "-o", bin, "./cmd/stackd")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

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

// TestSmoke runs the whole harness in smoke mode against a freshly built
// server and checks functional facts only: every figure has its rows, the
// onboarding answered 201, a no-op sync updated nothing, the changed
// branch was reported, the watcher saw the commit and the restart served
// the full view, the diff was answered. It asserts no timing.
func TestSmoke(t *testing.T) {
	requireGitDaemon(t)
	bin := buildStackd(t)
	opt, err := parseFlags([]string{"-smoke", "-stackd", bin, "-work", t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if opt.out != "" {
		t.Fatalf("smoke mode writes %q without -out", opt.out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // failure guard
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
		switch f.step {
		case "worktree":
			sizes = worktree
		case "diff":
			sizes = []int{diffLines}
		}
		for _, n := range sizes {
			r := res.cells[f.key][n]
			if r == nil {
				t.Errorf("%s at %d: no result", f.key, n)
				continue
			}
			switch {
			case r.stackd.ok():
			case logged[f.key] && r.stackd.na == noBuildLog:
			case f.key == "getgz" && r.stackd.na != "":
			default:
				t.Errorf("%s at %d: stackd: %s", f.key, n, r.stackd.text(f.unit))
			}
			if f.baseline != "" && f.key != "incbuild" && f.key != "getgz" && !r.base.ok() {
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
		"onboard answered 201":         mirrorSizes,
		"no-op sync updated nothing":   mirrorSizes,
		"changed branch reported":      mirrorSizes,
		"restart served the full view": mirrorSizes,
		"watcher saw the commit":       mirrorSizes,
		"re-read reported the commit":  worktree,
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

// Package stackdbin builds the stackd binary for tests that run it as a
// process (replicas, the hostile-upstream replays, the benchmark's smoke
// test): once per test binary and variant, into a temporary directory.
// Test support only; the server never imports it.
package stackdbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var builds struct {
	mu   sync.Mutex
	dir  string
	bins map[bool]result
}

type result struct {
	bin string
	err error
}

// Path returns the path of cmd/stackd built from the module the test runs
// in, with the race detector when race is set (tests run with -race share
// its packages with the build cache then; tests that measure the process's
// memory build without it). It builds once per variant.
func Path(t testing.TB, race bool) string {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if r, ok := builds.bins[race]; ok {
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.bin
	}
	bin, err := build(race)
	if builds.bins == nil {
		builds.bins = map[bool]result{}
	}
	builds.bins[race] = result{bin, err}
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func build(race bool) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	if builds.dir == "" {
		if builds.dir, err = os.MkdirTemp("", "stackd-bin-"); err != nil {
			return "", err
		}
	}
	name := "stackd"
	args := []string{"build"}
	if race {
		name += "-race"
		args = append(args, "-race")
	}
	bin := filepath.Join(builds.dir, name)
	args = append(args, "-o", bin, "./cmd/stackd")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// moduleRoot is the nearest directory above the working directory (a
// test's package directory) that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", fmt.Errorf("stackdbin: no go.mod above the working directory")
		}
		dir = up
	}
}

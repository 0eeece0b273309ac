package main

import (
	"bytes"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stackd/stackd/impl/memlimit"
)

// TestMemoryLimitFlag: --memory-limit from its default, the flag, the
// environment and the file; a bad value is a usage error naming the flag.
func TestMemoryLimitFlag(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	cfg, err := parseServe(nil, io.Discard)
	if err != nil || cfg.MemoryLimit != "auto" {
		t.Fatalf("default: %q %v", cfg.MemoryLimit, err)
	}
	cfg, err = parseServe([]string{"--memory-limit", "1GiB"}, io.Discard)
	if err != nil || cfg.MemoryLimit != "1GiB" {
		t.Fatalf("flag: %q %v", cfg.MemoryLimit, err)
	}
	for _, v := range []string{"lots", "1MiB", "1.5GiB"} {
		if _, err := parseServe([]string{"--memory-limit", v}, io.Discard); err == nil || !strings.Contains(err.Error(), "--memory-limit") {
			t.Errorf("--memory-limit %s: %v", v, err)
		}
	}
	file := filepath.Join(t.TempDir(), "stackd.yaml")
	if err := os.WriteFile(file, []byte("memoryLimit: 768MiB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = parseServe([]string{"--config", file}, io.Discard)
	if err != nil || cfg.MemoryLimit != "768MiB" {
		t.Fatalf("file: %q %v", cfg.MemoryLimit, err)
	}
	t.Setenv("STACKD_MEMORY_LIMIT", "off")
	cfg, err = parseServe([]string{"--config", file}, io.Discard)
	if err != nil || cfg.MemoryLimit != "off" {
		t.Fatalf("the environment beats the file: %q %v", cfg.MemoryLimit, err)
	}
}

// TestApplyMemoryLimit: start-up sets the process's limit, keeps
// GOMEMLIMIT's when --memory-limit is auto, and says so in the log. The
// test process's limit is put back.
func TestApplyMemoryLimit(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	apply := func(v string) { log.Info("memory limit", applyMemoryLimit(v)...) }

	t.Setenv("GOMEMLIMIT", "")
	apply("auto")
	want := memlimit.Choose(memlimit.Setting{Auto: true}, "", math.MaxInt64, os.DirFS("/"))
	if got := debug.SetMemoryLimit(-1); got != want.Bytes || want.Bytes <= 0 {
		t.Fatalf("auto without GOMEMLIMIT: limit %d, want %+v", got, want)
	}
	if !strings.Contains(logs.String(), "from="+want.From) {
		t.Fatalf("log: %s", logs.String())
	}

	// The runtime applied GOMEMLIMIT=3GiB at start (as it does before
	// main): auto keeps it, a size or off replaces it.
	debug.SetMemoryLimit(3 << 30)
	t.Setenv("GOMEMLIMIT", "3GiB")
	for _, tc := range []struct {
		flag, log string
		want      int64
	}{
		{"auto", "limit=3GiB from=GOMEMLIMIT", 3 << 30},
		{"1GiB", "limit=1GiB from=--memory-limit overrides=GOMEMLIMIT gomemlimit=3GiB", 1 << 30},
		{"off", "limit=off from=--memory-limit overrides=GOMEMLIMIT gomemlimit=3GiB", math.MaxInt64},
	} {
		logs.Reset()
		debug.SetMemoryLimit(3 << 30)
		apply(tc.flag)
		if got := debug.SetMemoryLimit(-1); got != tc.want {
			t.Errorf("--memory-limit %s with GOMEMLIMIT: limit %d, want %d", tc.flag, got, tc.want)
		}
		if !strings.Contains(logs.String(), tc.log) {
			t.Errorf("--memory-limit %s with GOMEMLIMIT: log %q lacks %q", tc.flag, logs.String(), tc.log)
		}
	}
}

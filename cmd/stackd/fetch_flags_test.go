package main

import (
	"io"
	"strings"
	"testing"

	"github.com/stackd/stackd/impl/config"
)

// TestFetchLimitFlags: the fetch limits from their defaults (zero: the
// mirror's own), the flags (sizes with units, the object count as a
// number) and the environment; a bad value is a usage error naming the
// flag.
func TestFetchLimitFlags(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	cfg, err := parseServe(nil, io.Discard)
	if err != nil || cfg.FetchLimits != (config.FetchLimits{}) {
		t.Fatalf("default: %+v %v", cfg.FetchLimits, err)
	}
	cfg, err = parseServe([]string{"--fetch-max-pack-size", "8GiB", "--fetch-max-objects", "5000000", "--fetch-max-inflated", "64GiB",
		"--fetch-max-commit-size", "16MiB", "--fetch-max-delta-size", "256MiB", "--fetch-max-refs", "1000000", "--fetch-max-ref-bytes", "32MiB"}, io.Discard)
	want := config.FetchLimits{PackSize: 8 << 30, Objects: 5_000_000, Inflated: 64 << 30, CommitSize: 16 << 20, DeltaSize: 256 << 20, Refs: 1_000_000, RefBytes: 32 << 20}
	if err != nil || cfg.FetchLimits != want {
		t.Fatalf("flags: %+v %v", cfg.FetchLimits, err)
	}
	t.Setenv("STACKD_FETCH_MAX_COMMIT_SIZE", "8MiB")
	if cfg, err = parseServe(nil, io.Discard); err != nil || cfg.FetchLimits.CommitSize != 8<<20 {
		t.Fatalf("environment: %+v %v", cfg.FetchLimits, err)
	}
	for _, args := range [][]string{{"--fetch-max-pack-size", "lots"}, {"--fetch-max-objects", "1e6"}, {"--fetch-max-delta-size", "-1MiB"}} {
		if _, err := parseServe(args, io.Discard); err == nil || !strings.Contains(err.Error(), args[0][1:]) {
			t.Errorf("%v: %v", args, err)
		}
	}
	if _, err := parseServe([]string{"--fetch-max-objects", "-3"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--fetch-max-objects") {
		t.Errorf("a negative count: %v", err)
	}
}

package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stackd/stackd/impl/config"
)

// TestEventStreamFlags: --max-event-streams and
// --max-event-streams-per-client from their defaults, the flags, the
// environment and the file (the flag wins), and refused out of bounds.
func TestEventStreamFlags(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	file := filepath.Join(t.TempDir(), "stackd.yaml")
	if err := os.WriteFile(file, []byte("maxEventStreams: 5000\nmaxEventStreamsPerClient: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		args          []string
		env           map[string]string
		total, client int
		wantErr       string
	}{
		{name: "defaults", total: 20000, client: 64},
		{name: "flags", args: []string{"--max-event-streams", "30000", "--max-event-streams-per-client", "100"}, total: 30000, client: 100},
		{name: "environment", env: map[string]string{"STACKD_MAX_EVENT_STREAMS": "1000", "STACKD_MAX_EVENT_STREAMS_PER_CLIENT": "8"}, total: 1000, client: 8},
		{name: "file", args: []string{"--config", file}, total: 5000, client: 10},
		{name: "flag over file", args: []string{"--config", file, "--max-event-streams-per-client", "20"}, total: 5000, client: 20},
		{name: "zero", args: []string{"--max-event-streams", "0"}, wantErr: "--max-event-streams 0"},
		{name: "per client above total", args: []string{"--max-event-streams", "10", "--max-event-streams-per-client", "11"}, wantErr: "--max-event-streams-per-client 11"},
		{name: "not a number", args: []string{"--max-event-streams", "many"}, wantErr: "max-event-streams"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, ok := parseServeCase(t, tt.args, tt.env, tt.wantErr)
			if !ok {
				return
			}
			if cfg.MaxEventStreams != tt.total || cfg.MaxEventStreamsPerClient != tt.client {
				t.Fatalf("streams %d per client %d, want %d %d", cfg.MaxEventStreams, cfg.MaxEventStreamsPerClient, tt.total, tt.client)
			}
		})
	}
}

// TestLogOpenFiles: the limit is logged at info when it covers
// --max-event-streams, else a warning says so and what to do; an unknown
// limit is not logged.
func TestLogOpenFiles(t *testing.T) {
	cfg := config.Default()
	need := cfg.FileDescriptorsNeeded()
	for _, tt := range []struct {
		name  string
		limit openFilesLimit
		want  []string // "" : nothing logged
	}{
		{"enough", openFilesLimit{Soft: need, Hard: need, Before: 1024, Known: true}, []string{"level=INFO", "open files limit", "soft=" + itoa(need), "before=1024"}},
		{"too low", openFilesLimit{Soft: need - 1, Hard: need - 1, Before: need - 1, Known: true}, []string{"level=WARN", "RLIMIT_NOFILE", "--max-event-streams", "needed=" + itoa(need), "maxEventStreams=20000"}},
		{"raise failed", openFilesLimit{Soft: 1024, Hard: 4096, Before: 1024, Known: true, Err: errors.New("operation not permitted")}, []string{"level=WARN", "err=\"operation not permitted\""}},
		{"unknown", openFilesLimit{}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			logOpenFiles(slog.New(slog.NewTextHandler(&buf, nil)), tt.limit, cfg)
			if tt.want == nil && buf.Len() != 0 {
				t.Fatalf("logged %q", buf.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("log %q lacks %q", buf.String(), w)
				}
			}
		})
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

package main

import (
	"io"
	"strings"
	"testing"

	"github.com/stackd/stackd/impl/config"
)

// TestMetricsFlags: --metrics-addr and --metrics-pprof are off by
// default, set by flags and the environment, and refused on the API's
// address or pprof without a metrics listener.
func TestMetricsFlags(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		addr    string
		pprof   bool
		wantErr string
	}{
		{name: "defaults"},
		{name: "flags", args: []string{"--metrics-addr", "127.0.0.1:9090", "--metrics-pprof"}, addr: "127.0.0.1:9090", pprof: true},
		{name: "metrics without pprof", args: []string{"--metrics-addr", "127.0.0.1:9090"}, addr: "127.0.0.1:9090"},
		{name: "environment", env: map[string]string{"STACKD_METRICS_ADDR": "127.0.0.1:9091", "STACKD_METRICS_PPROF": "true"}, addr: "127.0.0.1:9091", pprof: true},
		{name: "the API's address", args: []string{"--addr", "127.0.0.1:8080", "--metrics-addr", "127.0.0.1:8080"}, wantErr: "--metrics-addr"},
		{name: "pprof alone", args: []string{"--metrics-pprof"}, wantErr: "--metrics-pprof needs --metrics-addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, ok := parseServeCase(t, tt.args, tt.env, tt.wantErr)
			if !ok {
				return
			}
			if cfg.MetricsAddr != tt.addr || cfg.MetricsPprof != tt.pprof {
				t.Fatalf("metrics %q pprof %v, want %q %v", cfg.MetricsAddr, cfg.MetricsPprof, tt.addr, tt.pprof)
			}
		})
	}
}

// parseServeCase runs one case of a serve-flags table: it sets env, parses
// args, and reports the config (ok) or checks that the error names wantErr
// (not ok: the case is done).
func parseServeCase(t *testing.T, args []string, env map[string]string, wantErr string) (config.Config, bool) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := parseServe(args, io.Discard)
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("parseServe(%v) = %v, want an error naming %s", args, err, wantErr)
		}
		return config.Config{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return cfg, true
}

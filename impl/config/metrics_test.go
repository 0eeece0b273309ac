package config

import (
	"strings"
	"testing"
)

// TestValidateMetrics: --metrics-addr is off by default, must parse and
// must never be the API's listener (the same address, or the same port
// with either host a wildcard); --metrics-pprof needs it.
func TestValidateMetrics(t *testing.T) {
	tests := []struct {
		name    string
		addr    string
		metrics string
		pprof   bool
		wantErr string // "" when valid
	}{
		{name: "off", addr: "127.0.0.1:8080"},
		{name: "another port", addr: "127.0.0.1:8080", metrics: "127.0.0.1:9090"},
		{name: "another port with pprof", addr: "127.0.0.1:8080", metrics: "127.0.0.1:9090", pprof: true},
		{name: "same port, other host", addr: "127.0.0.1:8080", metrics: "10.0.0.1:8080"},
		{name: "both ephemeral", addr: "127.0.0.1:0", metrics: "127.0.0.1:0"},
		{name: "same address", addr: "127.0.0.1:8080", metrics: "127.0.0.1:8080", wantErr: "--metrics-addr"},
		{name: "same address, host case", addr: "LOCALHOST:8080", metrics: "localhost:8080", wantErr: "--metrics-addr"},
		{name: "api on every address", addr: ":8080", metrics: "127.0.0.1:8080", wantErr: "--metrics-addr"},
		{name: "metrics on every address", addr: "127.0.0.1:8080", metrics: "0.0.0.0:8080", wantErr: "--metrics-addr"},
		{name: "ipv6 wildcard", addr: "127.0.0.1:8080", metrics: "[::]:8080", wantErr: "--metrics-addr"},
		{name: "no port", addr: "127.0.0.1:8080", metrics: "127.0.0.1", wantErr: "--metrics-addr"},
		{name: "pprof without metrics", addr: "127.0.0.1:8080", pprof: true, wantErr: "--metrics-pprof needs --metrics-addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.DataDir = t.TempDir()
			c.Addr, c.MetricsAddr, c.MetricsPprof = tt.addr, tt.metrics, tt.pprof
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
	if d := Default(); d.MetricsAddr != "" || d.MetricsPprof {
		t.Fatalf("Default() has metrics %q pprof %v: both are off by default", d.MetricsAddr, d.MetricsPprof)
	}
}

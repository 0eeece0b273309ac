package auth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestLocalHost(t *testing.T) {
	a := &Auth{baseHost: "stackd.test"}
	for _, tt := range []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"localhost:8080", true},
		{"LocalHost:1", true},
		{"localhost.", true},
		{"127.0.0.1", true},
		{"127.0.0.1:8080", true},
		{"127.255.0.9:1", true},
		{"[::1]", true},
		{"[::1]:8080", true},
		{"::1", true},
		{"[::ffff:127.0.0.1]:80", true},
		{"stackd.test", true},
		{"stackd.test:443", true},
		{"STACKD.TEST.", true},
		{"", false},
		{":8080", false},
		{"evil.example", false},
		{"evil.example:8080", false},
		{"localhost.evil.example", false},
		{"127.0.0.1.evil.example", false},
		{"stackd.test.evil.example", false},
		{"evil-stackd.test", false},
		{"0x7f000001", false},
		{"127.1", false},
		{"2130706433", false},
		{"10.0.0.1", false},
		{"0.0.0.0", false},
		{"[::]", false},
		{"[::2]:80", false},
		{"[fe80::1%25lo]:80", false},
		{"user@localhost", false},
		{"localhost/x", false},
	} {
		if got := a.localHost(tt.host); got != tt.want {
			t.Errorf("localHost(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestHostsOnlyOnLoopback(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, tt := range []struct {
		loopback bool
		host     string
		want     int
	}{
		{true, "localhost:8080", http.StatusNoContent},
		{true, "evil.example", http.StatusMisdirectedRequest},
		{false, "evil.example", http.StatusNoContent},
	} {
		a := &Auth{cfg: Config{Loopback: tt.loopback}}
		r := httptest.NewRequest(http.MethodGet, "/api/v1/repos", nil)
		r.Host = tt.host
		w := httptest.NewRecorder()
		a.Hosts(ok).ServeHTTP(w, r)
		if w.Code != tt.want {
			t.Errorf("loopback %v, Host %q: %d, want %d", tt.loopback, tt.host, w.Code, tt.want)
		}
	}
}

func TestOriginAllowed(t *testing.T) {
	for _, tt := range []struct {
		loopback bool
		base     string
		origin   string
		want     bool
	}{
		{true, "", "http://localhost:3000", true},
		{true, "", "http://127.0.0.1:8080", true},
		{true, "", "https://[::1]", true},
		{true, "", "http://evil.example", false},
		{true, "", "http://localhost.evil.example", false},
		{true, "", "file://localhost", false},
		{true, "", "null", false},
		{true, "http://stackd.test:9999", "http://stackd.test:9999", true},
		{false, "", "http://127.0.0.1:8080", false},
		{false, "https://stackd.example.com", "https://stackd.example.com", true},
		{false, "https://stackd.example.com", "https://other.example.com", false},
	} {
		a, err := New(context.Background(), Config{Loopback: tt.loopback, BaseURL: tt.base}, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.originAllowed(tt.origin); got != tt.want {
			t.Errorf("loopback %v, base %q: originAllowed(%q) = %v", tt.loopback, tt.base, tt.origin, got)
		}
	}
}

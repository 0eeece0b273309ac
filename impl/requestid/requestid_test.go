package requestid

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	for _, tt := range []struct {
		id   string
		want bool
	}{
		{"a", true},
		{"4f6c0e1b-9a2d-4c7e-8f3a-5b6c7d8e9f01", true},
		{"req_1.2:3", true},
		{strings.Repeat("x", MaxLen), true},
		{strings.Repeat("x", MaxLen+1), false},
		{"", false},
		{"a b", false},
		{"a\nb", false},
		{"a=b", false},
		{"<script>", false},
		{"é", false},
	} {
		if got := Valid(tt.id); got != tt.want {
			t.Errorf("Valid(%q) = %v", tt.id, got)
		}
	}
	if a, b := New(), New(); a == b || !Valid(a) || len(a) != 32 {
		t.Fatalf("New: %q %q", a, b)
	}
}

func TestMiddleware(t *testing.T) {
	var seen string
	h := Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = From(r.Context()) }))
	for _, in := range []string{"kept-1", "not kept"} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set(Header, in)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		got := w.Header().Get(Header)
		if got != seen || !Valid(got) || (in == "kept-1") != (got == in) {
			t.Errorf("incoming %q: header %q, context %q", in, got, seen)
		}
	}
}

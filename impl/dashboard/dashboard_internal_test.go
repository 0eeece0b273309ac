package dashboard

import "testing"

func TestAcceptsGzip(t *testing.T) {
	for _, tc := range []struct {
		values []string
		want   bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{"gzip"}, true},
		{[]string{"GZIP"}, true},
		{[]string{"x-gzip"}, true},
		{[]string{"gzip, deflate, br"}, true},
		{[]string{"br", "gzip"}, true},
		{[]string{"deflate, br"}, false},
		{[]string{"identity"}, false},
		{[]string{"gzip;q=0"}, false},
		{[]string{"gzip; q=0.0"}, false},
		{[]string{"gzip;q=0.5"}, true},
		{[]string{"gzip;q=1"}, true},
		{[]string{"gzip;q=bogus"}, false},
		{[]string{"gzip;q=2"}, false},
		{[]string{"*"}, true},
		{[]string{"*;q=0"}, false},
		{[]string{"*, gzip;q=0"}, false},
		{[]string{"gzip;q=0, *"}, false},
		{[]string{"gzip;q=0, x-gzip;q=0.1"}, true},
		{[]string{"gzip;level=9"}, true},
		{[]string{"gzipped"}, false},
	} {
		if got := acceptsGzip(tc.values); got != tc.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tc.values, got, tc.want)
		}
	}
}

func TestNoneMatch(t *testing.T) {
	const etag = `"0123456789abcdef"`
	for _, tc := range []struct {
		values []string
		want   bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{etag}, true},
		{[]string{`W/` + etag}, true},
		{[]string{`"x", ` + etag}, true},
		{[]string{`"x"`, etag}, true},
		{[]string{`"x"`}, false},
		{[]string{`"0123456789abcdef-gzip"`}, false},
		{[]string{`0123456789abcdef`}, false},
		{[]string{`*`}, true},
	} {
		if got := noneMatch(tc.values, etag); got != tc.want {
			t.Errorf("noneMatch(%q) = %v, want %v", tc.values, got, tc.want)
		}
	}
}

package handoff

import (
	"context"
	"testing"
)

// TestRecordRunsOnce: the record runs once, with the bytes of the
// hand-over, whichever of the handler's end and the middleware's return
// comes last; without a hand-over the middleware records itself.
func TestRecordRunsOnce(t *testing.T) {
	for _, tc := range []struct {
		name         string
		take         bool
		endFirst     bool
		wantDeferred bool
		wantExtra    int64
	}{
		{name: "not handed over"},
		{name: "ends after the handler returned", take: true, wantDeferred: true, wantExtra: 42},
		{name: "ends before the handler returned", take: true, endFirst: true, wantDeferred: true, wantExtra: 42},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, tr := New(context.Background())
			if From(ctx) != tr {
				t.Fatal("From does not find the Tracker")
			}
			var ended func(int64)
			if tc.take {
				ended = From(ctx).Take()
			}
			if tc.endFirst {
				ended(42)
			}
			var records []int64
			deferred := tr.Returned(func(extra int64) { records = append(records, extra) })
			if deferred != tc.wantDeferred {
				t.Fatalf("Returned = %v, want %v", deferred, tc.wantDeferred)
			}
			if tc.take && !tc.endFirst {
				if len(records) != 0 {
					t.Fatalf("recorded before the end: %v", records)
				}
				ended(42)
			}
			if tc.take {
				ended(7) // a second end is ignored
			}
			want := 0
			if tc.wantDeferred {
				want = 1
			}
			if len(records) != want || (want == 1 && records[0] != tc.wantExtra) {
				t.Fatalf("records %v, want %d of %d", records, want, tc.wantExtra)
			}
		})
	}
}

// TestNoTracker: a handler under no recording middleware may hand over.
func TestNoTracker(t *testing.T) {
	From(context.Background()).Take()(1)
}

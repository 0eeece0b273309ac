package api

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stackd/stackd/impl/refresh"
)

// TestShutdownErrors: the run errors that mean the server is shutting down
// (a run that never started, one the manager cancelled) answer 503; a
// timeout and other failures do not.
func TestShutdownErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{refresh.ErrClosed, true},
		{fmt.Errorf("wrapped: %w", refresh.ErrClosed), true},
		{context.Canceled, true},
		{fmt.Errorf("fetch: %w", context.Canceled), true},
		{fmt.Errorf("%w after 2m: %w", refresh.ErrTimeout, context.DeadlineExceeded), false},
		{fmt.Errorf("%w after 2m: %w", refresh.ErrTimeout, context.Canceled), false},
		{refresh.ErrFetch, false},
		{errors.New("disk"), false},
	} {
		if got := shutdown(tc.err); got != tc.want {
			t.Errorf("shutdown(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	p := shuttingDown()
	if p.Body.Status != 503 || p.Body.Type != "/problems/unavailable" || p.Headers.RetryAfter <= 0 {
		t.Fatalf("shutting down: %+v", p)
	}
}

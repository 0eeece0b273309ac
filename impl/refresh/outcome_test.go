package refresh

import (
	"errors"
	"fmt"
	"testing"
)

// TestOutcome: the outcome label of a run names why it failed, from a
// bounded set, through wrapping.
func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "succeeded"},
		{fmt.Errorf("%w after 2m: %w", ErrTimeout, errors.New("deadline")), "timeout"},
		{fmt.Errorf("%w: could not clone", ErrFetch), "fetch_failed"},
		{fmt.Errorf("%w: a branch names a blob", ErrBuild), "build_failed"},
		{ErrLeaseLost, "lease_lost"},
		{fmt.Errorf("%w: disk full", ErrStorage), "storage_failed"},
		{ErrClosed, "cancelled"},
		{fmt.Errorf("%w (%w)", ErrRemoved, errors.New("context canceled")), "cancelled"},
		{ErrPanic, "panic"},
		{errors.New("the server is short of memory"), "failed"},
	} {
		if got := Outcome(tc.err); got != tc.want {
			t.Errorf("Outcome(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

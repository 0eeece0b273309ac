package repos

import (
	"context"
	"fmt"

	"github.com/stackd/stackd/impl/memlimit"
	"github.com/stackd/stackd/impl/refresh"
)

// Memory pressure (memlimit): while the server is short of memory, no new
// fetch starts. An onboarding (Onboard) and a sync of a mirror that would
// create a run (package api) answer 503 with Retry-After; a run that
// reaches its fetch anyway (interval, webhook, start-up, or a sync
// admitted just before) fails fast with memlimit.ErrPressure
// (GuardFetches), which the interval loop's backoff postpones. Reading a
// working repository fetches nothing and is never refused.

// GuardFetches is the refresh.Options.BeforeRefresh hook that fails a
// mirror's fetch with memlimit.ErrPressure while short() says the server
// is short of memory, before it calls next (when not nil).
func GuardFetches(short func() bool, next func(ctx context.Context, repoID string, mode refresh.Mode) error) func(ctx context.Context, repoID string, mode refresh.Mode) error {
	return func(ctx context.Context, repoID string, mode refresh.Mode) error {
		if mode == refresh.ModeMirrorFetch && short() {
			return fmt.Errorf("fetch postponed: %w", memlimit.ErrPressure)
		}
		if next != nil {
			return next(ctx, repoID, mode)
		}
		return nil
	}
}

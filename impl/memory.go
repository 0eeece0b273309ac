package impl

import (
	"context"
	"fmt"

	"github.com/stackd/stackd/impl/memlimit"
	"github.com/stackd/stackd/impl/refresh"
)

// Memory pressure (memlimit): while the server is short of memory, no new
// fetch starts. A sync of a mirror that would create a run and an
// onboarding answer 503 with Retry-After (package api); a run that
// reaches its fetch anyway (interval, webhook, start-up, or a sync
// admitted just before) fails fast with memlimit.ErrPressure, which the
// interval loop's backoff postpones. Reading a working repository fetches
// nothing and is never refused.

// refreshHook is refresh.Options.BeforeRefresh.
type refreshHook = func(ctx context.Context, repoID string, mode refresh.Mode) error

// guardFetches is the BeforeRefresh hook that fails a mirror's fetch with
// memlimit.ErrPressure while short() says the server is short of memory,
// before it calls next (when not nil).
func guardFetches(short func() bool, next refreshHook) refreshHook {
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

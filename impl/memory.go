package impl

import (
	"context"
	"fmt"
	"net/http"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/memlimit"
	"github.com/stackd/stackd/impl/problem"
	"github.com/stackd/stackd/impl/refresh"
)

// Memory pressure (memlimit): while the server is short of memory, no new
// fetch starts. A sync of a mirror that would create a run and an
// onboarding answer 503 with Retry-After; a run that reaches its fetch
// anyway (interval, webhook, start-up, or a sync admitted just before)
// fails fast with memlimit.ErrPressure, which the interval loop's backoff
// postpones. Reading a working repository fetches nothing and is never
// refused. Joining a queued run starts nothing and is never refused.

// memoryRetryAfter is the Retry-After, in seconds, of a 503 for memory: a
// few collections' time.
const memoryRetryAfter = 10

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

// shortOfMemory is the 503 of a fetch refused for memory.
func shortOfMemory() gen.ShuttingDownApplicationProblemPlusJSONResponse {
	return gen.ShuttingDownApplicationProblemPlusJSONResponse{
		Body:    problem.New(http.StatusServiceUnavailable, problem.Unavailable, memlimit.ErrPressure.Error()),
		Headers: gen.ShuttingDownResponseHeaders{RetryAfter: memoryRetryAfter},
	}
}

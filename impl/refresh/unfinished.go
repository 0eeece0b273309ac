package refresh

import (
	"context"
	"log/slog"
	"time"

	"github.com/stackd/stackd/impl/store"
)

// UnfinishedReason is the error of the syncs a previous process left
// queued or running.
const UnfinishedReason = "stackd stopped before this sync finished"

// FailUnfinished marks the syncs that a previous process of this replica
// left queued or running as failed (UnfinishedReason): no Refresher of
// this process will finish them. Other replicas' syncs (a shared
// database) are theirs. Call it before any Refresher runs.
func FailUnfinished(ctx context.Context, st store.SyncStore, replica string, log *slog.Logger) error {
	n, err := st.FailUnfinished(ctx, replica, time.Now().UTC(), UnfinishedReason)
	if err != nil {
		return err
	}
	if n > 0 {
		log.Info("syncs left unfinished by the previous run marked failed", "count", n)
	}
	return nil
}

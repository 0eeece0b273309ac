package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ScheduleStore keeps, for replicas that share the database, when each
// repository's next interval run is due, so that one replica runs it per
// interval (refresh.Scheduler claims a due run here before it starts it).
type ScheduleStore interface {
	// ScheduledDue returns the repository's stored due time, first
	// storing initial when none is stored.
	ScheduledDue(ctx context.Context, repoID string, initial time.Time) (time.Time, error)
	// ClaimDue moves the repository's due time to next when the stored
	// one is at most due (or none is stored), in one statement, also
	// between processes: claimed reports that this call moved it.
	// Otherwise stored is the due time another claim left.
	ClaimDue(ctx context.Context, repoID string, due, next time.Time) (stored time.Time, claimed bool, err error)
	// SetDue stores the repository's due time (the claimer's, once its
	// run ended).
	SetDue(ctx context.Context, repoID string, due time.Time) error
}

// ScheduledDue returns the stored due time, storing initial when none is.
func (s *core) ScheduledDue(ctx context.Context, repoID string, initial time.Time) (time.Time, error) {
	defer s.timed("scheduled_due")()
	key := strings.ToLower(repoID)
	if _, err := s.db.exec(ctx, `INSERT INTO schedule (repo_key, next_due) VALUES (?, ?) ON CONFLICT (repo_key) DO NOTHING`,
		key, initial.UnixNano()); err != nil {
		return time.Time{}, fmt.Errorf("store: schedule: %w", err)
	}
	var at int64
	if err := s.db.queryRow(ctx, `SELECT next_due FROM schedule WHERE repo_key = ?`, key).Scan(&at); err != nil {
		return time.Time{}, fmt.Errorf("store: schedule: %w", err)
	}
	return time.Unix(0, at).UTC(), nil
}

// claimDueQuery moves a due time forward only when it is due: of two
// replicas that claim the same due time, one row comes back to one.
const claimDueQuery = `INSERT INTO schedule (repo_key, next_due) VALUES (?, ?)
	ON CONFLICT (repo_key) DO UPDATE SET next_due = excluded.next_due WHERE schedule.next_due <= ?
	RETURNING next_due`

// ClaimDue claims the run due at due, moving the due time to next.
func (s *core) ClaimDue(ctx context.Context, repoID string, due, next time.Time) (time.Time, bool, error) {
	defer s.timed("claim_due")()
	key := strings.ToLower(repoID)
	var at int64
	err := s.db.queryRow(ctx, claimDueQuery, key, next.UnixNano(), due.UnixNano()).Scan(&at)
	switch {
	case err == nil:
		return time.Unix(0, at).UTC(), true, nil
	case !errors.Is(err, sql.ErrNoRows):
		return time.Time{}, false, fmt.Errorf("store: claim due run: %w", err)
	}
	if err := s.db.queryRow(ctx, `SELECT next_due FROM schedule WHERE repo_key = ?`, key).Scan(&at); err != nil {
		return time.Time{}, false, fmt.Errorf("store: claim due run: %w", err)
	}
	return time.Unix(0, at).UTC(), false, nil
}

// SetDue stores the due time.
func (s *core) SetDue(ctx context.Context, repoID string, due time.Time) error {
	defer s.timed("set_due")()
	_, err := s.db.exec(ctx, `INSERT INTO schedule (repo_key, next_due) VALUES (?, ?)
		ON CONFLICT (repo_key) DO UPDATE SET next_due = excluded.next_due`, strings.ToLower(repoID), due.UnixNano())
	if err != nil {
		return fmt.Errorf("store: set due: %w", err)
	}
	return nil
}

package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// defaultSyncPage is what ListSyncs returns when asked for limit <= 0.
const defaultSyncPage = 50

// Repos returns every stored repository, ordered by id.
func (s *core) Repos(ctx context.Context) ([]Repo, error) {
	defer s.timed("repos")()
	rows, err := s.db.query(ctx, `SELECT id, url, trunk, full_name, created_at, created_by, added_by_subject, added_by_email
		FROM repos ORDER BY id_key`)
	if err != nil {
		return nil, fmt.Errorf("store: repos: %w", err)
	}
	defer rows.Close()
	var out []Repo
	for rows.Next() {
		var (
			r  Repo
			at int64
		)
		if err := rows.Scan(&r.ID, &r.URL, &r.Trunk, &r.FullName, &at, &r.CreatedBy, &r.AddedBySubject, &r.AddedByEmail); err != nil {
			return nil, fmt.Errorf("store: repos: %w", err)
		}
		r.CreatedAt = time.Unix(0, at).UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: repos: %w", err)
	}
	return out, nil
}

// AddRepo stores r; an id already stored is ErrConflict.
func (s *core) AddRepo(ctx context.Context, r Repo) error {
	defer s.timed("add_repo")()
	if r.ID == "" || r.URL == "" || r.CreatedAt.IsZero() {
		return fmt.Errorf("store: add repo: %w: needs an id, a URL and a creation time", ErrInvalid)
	}
	// The primary key decides, also between processes: a clash inserts
	// nothing, and that is ErrConflict rather than an engine's own
	// constraint error.
	n, err := s.db.exec(ctx, `INSERT INTO repos (id_key, id, url, trunk, full_name, created_at, created_by, added_by_subject, added_by_email)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id_key) DO NOTHING`,
		strings.ToLower(r.ID), r.ID, r.URL, r.Trunk, r.FullName, r.CreatedAt.UnixNano(), r.CreatedBy, r.AddedBySubject, r.AddedByEmail)
	if err != nil {
		return fmt.Errorf("store: add repo: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("store: add repo %q: %w", r.ID, ErrConflict)
	}
	return nil
}

// DeleteRepo forgets a repository and its sync history.
func (s *core) DeleteRepo(ctx context.Context, id string) error {
	defer s.timed("delete_repo")()
	tx, err := s.db.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: delete repo: %w", err)
	}
	defer func() { _ = tx.rollback(context.WithoutCancel(ctx)) }()
	key := strings.ToLower(id)
	if _, err := tx.exec(ctx, `DELETE FROM syncs WHERE repo_key = ?`, key); err != nil {
		return fmt.Errorf("store: delete repo: %w", err)
	}
	if _, err := tx.exec(ctx, `DELETE FROM schedule WHERE repo_key = ?`, key); err != nil {
		return fmt.Errorf("store: delete repo: %w", err)
	}
	if _, err := tx.exec(ctx, `DELETE FROM repos WHERE id_key = ?`, key); err != nil {
		return fmt.Errorf("store: delete repo: %w", err)
	}
	if err := tx.commit(ctx); err != nil {
		return fmt.Errorf("store: delete repo: %w", err)
	}
	return nil
}

// stateRank orders the states in SQL: a stored sync only moves forward.
const stateRank = `CASE %s WHEN 'queued' THEN 0 WHEN 'running' THEN 1 ELSE 2 END`

// putSyncQuery inserts a sync or moves a stored one forward.
var putSyncQuery = `INSERT INTO syncs (id, repo_key, repo_id, trigger_kind, mode, state, queued_at, started_at, finished_at,
		duration_ms, view_version, changes_total, changes_json, error, replica)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (id) DO UPDATE SET trigger_kind = excluded.trigger_kind, mode = excluded.mode,
		state = excluded.state, started_at = excluded.started_at, finished_at = excluded.finished_at,
		duration_ms = excluded.duration_ms, view_version = excluded.view_version,
		changes_total = excluded.changes_total, changes_json = excluded.changes_json, error = excluded.error,
		replica = excluded.replica
	WHERE ` + fmt.Sprintf(stateRank, "syncs.state") + ` <= ` + fmt.Sprintf(stateRank, "excluded.state")

// trimSyncsQuery deletes a repository's finished syncs older than the
// keep-th newest (the oldest one kept).
const trimSyncsQuery = `DELETE FROM syncs WHERE repo_key = ? AND state IN ('succeeded', 'failed')
	AND id < (SELECT id FROM syncs WHERE repo_key = ? AND state IN ('succeeded', 'failed')
		ORDER BY id DESC LIMIT 1 OFFSET ?)`

// putSyncArgs checks sy and returns the arguments of putSyncQuery.
func putSyncArgs(sy Sync) ([]any, error) {
	switch {
	case sy.ID == "" || sy.RepoID == "" || sy.QueuedAt.IsZero():
		return nil, fmt.Errorf("store: put sync: %w: needs an id, a repository and a queue time", ErrInvalid)
	case sy.State != StateQueued && sy.State != StateRunning && sy.State != StateSucceeded && sy.State != StateFailed:
		return nil, fmt.Errorf("store: put sync: %w: state %q", ErrInvalid, sy.State)
	}
	cj := "[]"
	if len(sy.Changes) > 0 {
		b, err := json.Marshal(sy.Changes)
		if err != nil {
			return nil, fmt.Errorf("store: put sync: %w", err)
		}
		cj = string(b)
	}
	return []any{sy.ID, strings.ToLower(sy.RepoID), sy.RepoID, sy.Trigger, sy.Mode, sy.State, sy.QueuedAt.UnixNano(),
		nanos(sy.StartedAt), nanos(sy.FinishedAt), sy.DurationMs, sy.ViewVersion, sy.ChangesTotal, cj, sy.Error,
		sy.Replica}, nil
}

// PutSyncs stores list in one transaction, then trims the finished syncs
// of each repository in it to the keep newest.
func (s *core) PutSyncs(ctx context.Context, list []Sync, keep int) error {
	defer s.timed("put_syncs")()
	if len(list) == 0 {
		return nil
	}
	all := make([][]any, 0, len(list))
	for _, sy := range list {
		args, err := putSyncArgs(sy)
		if err != nil {
			return err
		}
		all = append(all, args)
	}
	return s.putSyncsTx(ctx, "put syncs", all, keep)
}

// putSyncsTx runs putSyncQuery with each of all (putSyncArgs) in one
// transaction, then trims the finished syncs of each repository among
// them to the keep newest (none when keep <= 0). op names the caller in
// errors.
func (s *core) putSyncsTx(ctx context.Context, op string, all [][]any, keep int) error {
	tx, err := s.db.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	defer func() { _ = tx.rollback(context.WithoutCancel(ctx)) }()
	for _, args := range all {
		if _, err := tx.exec(ctx, putSyncQuery, args...); err != nil {
			return fmt.Errorf("store: %s: %w", op, err)
		}
	}
	trimmed := map[string]bool{}
	for _, args := range all {
		key := args[1].(string)
		if keep <= 0 || trimmed[key] {
			continue
		}
		trimmed[key] = true
		if _, err := tx.exec(ctx, trimSyncsQuery, key, key, keep-1); err != nil {
			return fmt.Errorf("store: %s: trim: %w", op, err)
		}
	}
	if err := tx.commit(ctx); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return nil
}

// PutSync inserts or updates s, never moving it back, then trims the
// repository's finished syncs to the keep newest.
func (s *core) PutSync(ctx context.Context, sy Sync, keep int) error {
	defer s.timed("put_sync")()
	args, err := putSyncArgs(sy)
	if err != nil {
		return err
	}
	// Only a finished sync adds to the finished ones: a queued or running
	// one leaves nothing to trim, and its one statement needs no
	// transaction of its own (two of a run's three writes).
	if keep <= 0 || (sy.State != StateSucceeded && sy.State != StateFailed) {
		if _, err := s.db.exec(ctx, putSyncQuery, args...); err != nil {
			return fmt.Errorf("store: put sync: %w", err)
		}
		return nil
	}
	return s.putSyncsTx(ctx, "put sync", [][]any{args}, keep)
}

const syncColumns = `id, repo_id, trigger_kind, mode, state, queued_at, started_at, finished_at,
	duration_ms, view_version, changes_total, changes_json, error, replica`

// GetSync returns one sync of the repository.
func (s *core) GetSync(ctx context.Context, repoID, id string) (Sync, error) {
	defer s.timed("get_sync")()
	rows, err := s.db.query(ctx, `SELECT `+syncColumns+` FROM syncs WHERE id = ? AND repo_key = ?`,
		id, strings.ToLower(repoID))
	if err != nil {
		return Sync{}, fmt.Errorf("store: sync: %w", err)
	}
	list, err := scanSyncs(rows)
	if err != nil {
		return Sync{}, err
	}
	if len(list) == 0 {
		return Sync{}, ErrNotFound
	}
	return list[0], nil
}

// ListSyncs returns a page of the repository's syncs, newest first.
func (s *core) ListSyncs(ctx context.Context, repoID, before string, limit int) ([]Sync, error) {
	defer s.timed("list_syncs")()
	if limit <= 0 {
		limit = defaultSyncPage
	}
	key := strings.ToLower(repoID)
	var (
		rows rowsIter
		err  error
	)
	if before == "" {
		rows, err = s.db.query(ctx, `SELECT `+syncColumns+` FROM syncs WHERE repo_key = ?
			ORDER BY id DESC LIMIT ?`, key, limit)
	} else {
		rows, err = s.db.query(ctx, `SELECT `+syncColumns+` FROM syncs WHERE repo_key = ? AND id < ?
			ORDER BY id DESC LIMIT ?`, key, before, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("store: syncs: %w", err)
	}
	return scanSyncs(rows)
}

// FailUnfinished marks every queued or running sync of replica (and those
// recorded without a replica) failed.
func (s *core) FailUnfinished(ctx context.Context, replica string, at time.Time, reason string) (int64, error) {
	defer s.timed("fail_unfinished")()
	n, err := s.db.exec(ctx, `UPDATE syncs SET state = 'failed', finished_at = ?, error = ?,
		duration_ms = CASE WHEN started_at IS NULL THEN NULL ELSE (? - started_at) / 1000000 END
		WHERE state IN ('queued', 'running') AND replica IN (?, '')`, at.UnixNano(), reason, at.UnixNano(), replica)
	if err != nil {
		return 0, fmt.Errorf("store: fail unfinished syncs: %w", err)
	}
	return n, nil
}

// DeleteSyncs forgets the sync history of one repository.
func (s *core) DeleteSyncs(ctx context.Context, repoID string) error {
	defer s.timed("delete_syncs")()
	if _, err := s.db.exec(ctx, `DELETE FROM syncs WHERE repo_key = ?`, strings.ToLower(repoID)); err != nil {
		return fmt.Errorf("store: delete syncs: %w", err)
	}
	return nil
}

// SeenDelivery records a webhook delivery id and reports whether it was
// already recorded within ttl before now. The one statement decides, also
// between processes sharing the database: of concurrent calls with one id,
// exactly one is told it is new. A record older than ttl counts as absent
// and is replaced; expired records are deleted on the way.
func (s *core) SeenDelivery(ctx context.Context, id string, now time.Time, ttl time.Duration) (bool, error) {
	defer s.timed("seen_delivery")()
	if id == "" {
		return false, nil
	}
	if ttl <= 0 {
		return false, fmt.Errorf("store: seen delivery: %w: ttl must be positive", ErrInvalid)
	}
	cutoff := now.Add(-ttl).UnixNano()
	tx, err := s.db.begin(ctx)
	if err != nil {
		return false, fmt.Errorf("store: seen delivery: %w", err)
	}
	defer func() { _ = tx.rollback(context.WithoutCancel(ctx)) }()
	n, err := tx.exec(ctx, `INSERT INTO deliveries (id, seen_at) VALUES (?, ?)
		ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at WHERE deliveries.seen_at <= ?`,
		id, now.UnixNano(), cutoff)
	if err != nil {
		return false, fmt.Errorf("store: seen delivery: %w", err)
	}
	if _, err := tx.exec(ctx, `DELETE FROM deliveries WHERE seen_at <= ?`, cutoff); err != nil {
		return false, fmt.Errorf("store: seen delivery: sweep: %w", err)
	}
	if err := tx.commit(ctx); err != nil {
		return false, fmt.Errorf("store: seen delivery: %w", err)
	}
	return n == 0, nil
}

func scanSyncs(rows rowsIter) ([]Sync, error) {
	defer rows.Close()
	var out []Sync
	for rows.Next() {
		var (
			sy                Sync
			queued            int64
			started, finished *int64
			cj                string
		)
		if err := rows.Scan(&sy.ID, &sy.RepoID, &sy.Trigger, &sy.Mode, &sy.State, &queued, &started, &finished,
			&sy.DurationMs, &sy.ViewVersion, &sy.ChangesTotal, &cj, &sy.Error, &sy.Replica); err != nil {
			return nil, fmt.Errorf("store: syncs: %w", err)
		}
		sy.QueuedAt = time.Unix(0, queued).UTC()
		sy.StartedAt, sy.FinishedAt = timeOf(started), timeOf(finished)
		if err := json.Unmarshal([]byte(cj), &sy.Changes); err != nil {
			return nil, fmt.Errorf("store: sync %s changes: %w", sy.ID, err)
		}
		out = append(out, sy)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: syncs: %w", err)
	}
	return out, nil
}

// nanos is a nullable time column's value.
func nanos(t *time.Time) any {
	if t == nil || t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func timeOf(v *int64) *time.Time {
	if v == nil {
		return nil
	}
	t := time.Unix(0, *v).UTC()
	return &t
}

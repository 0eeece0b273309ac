package refresh

import (
	"errors"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/stackd/stackd/impl/refs"
	"github.com/stackd/stackd/impl/store"
)

// record is the stored form of a result.
func (res Result) record() store.Sync {
	sy := store.Sync{
		ID:           res.ID,
		RepoID:       res.RepoID,
		Trigger:      string(res.Trigger),
		Mode:         string(res.Mode),
		State:        string(res.State),
		QueuedAt:     res.QueuedAt,
		StartedAt:    res.StartedAt,
		FinishedAt:   res.FinishedAt,
		DurationMs:   res.DurationMs,
		ViewVersion:  res.ViewVersion,
		ChangesTotal: max(res.ChangesTotal, len(res.Changes)),
		Error:        res.Error,
		Replica:      res.Replica,
	}
	changes := res.Changes[:min(len(res.Changes), MaxReportedChanges)]
	sy.Changes = make([]store.RefChange, 0, len(changes))
	for _, c := range changes {
		rc := store.RefChange{Ref: c.Ref, Change: string(c.Kind)}
		if !c.Old.IsZero() {
			rc.Old = c.Old.String()
		}
		if !c.New.IsZero() {
			rc.New = c.New.String()
		}
		sy.Changes = append(sy.Changes, rc)
	}
	return sy
}

// resultOf is a result read back from the store. Its Err carries only the
// stored text.
func resultOf(sy store.Sync) Result {
	res := Result{
		ID:           sy.ID,
		RepoID:       sy.RepoID,
		Trigger:      Trigger(sy.Trigger),
		Mode:         Mode(sy.Mode),
		State:        State(sy.State),
		QueuedAt:     sy.QueuedAt,
		StartedAt:    sy.StartedAt,
		FinishedAt:   sy.FinishedAt,
		DurationMs:   sy.DurationMs,
		ViewVersion:  sy.ViewVersion,
		ChangesTotal: sy.ChangesTotal,
		Error:        sy.Error,
		Replica:      sy.Replica,
	}
	if res.State == Failed {
		res.Err = errors.New(sy.Error)
	}
	res.Changes = make([]refs.Change, 0, len(sy.Changes))
	for _, c := range sy.Changes {
		ch := refs.Change{Ref: c.Ref, Kind: refs.Kind(c.Change)}
		if c.Old != "" {
			ch.Old = plumbing.NewHash(c.Old)
		}
		if c.New != "" {
			ch.New = plumbing.NewHash(c.New)
		}
		res.Changes = append(res.Changes, ch)
	}
	return res
}

package refresh

import (
	"github.com/stackd/stackd/gen"
)

// MaxReportedChanges caps the refs a result keeps and lists (a first clone
// of a large repository creates every ref); ChangesTotal counts them all.
const MaxReportedChanges = 1000

// API converts a result to the API's SyncResult: the one conversion, used
// by the HTTP handlers and the event stream alike.
func (res Result) API() gen.SyncResult {
	out := gen.SyncResult{
		Id:               res.ID,
		RepoID:           res.RepoID,
		Trigger:          gen.SyncResultTrigger(res.Trigger),
		Mode:             gen.SyncResultMode(res.Mode),
		State:            gen.SyncResultState(res.State),
		QueuedAt:         res.QueuedAt,
		StartedAt:        res.StartedAt,
		FinishedAt:       res.FinishedAt,
		DurationMs:       res.DurationMs,
		UpdatedRefsTotal: max(res.ChangesTotal, len(res.Changes)),
		UpdatedRefs:      make([]gen.RefUpdate, 0, min(len(res.Changes), MaxReportedChanges)),
	}
	if res.ViewVersion > 0 { // null until a view has been published
		v := res.ViewVersion
		out.ViewVersion = &v
	}
	if res.Error != "" {
		e := res.Error
		out.Error = &e
	}
	if res.Replica != "" {
		r := res.Replica
		out.Replica = &r
	}
	for _, c := range res.Changes[:min(len(res.Changes), MaxReportedChanges)] {
		ru := gen.RefUpdate{Ref: c.Ref, Change: gen.RefUpdateChange(c.Kind)}
		if !c.Old.IsZero() {
			o := c.Old.String()
			ru.OldSha = &o
		}
		if !c.New.IsZero() {
			n := c.New.String()
			ru.NewSha = &n
		}
		out.UpdatedRefs = append(out.UpdatedRefs, ru)
	}
	return out
}

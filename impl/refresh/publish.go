package refresh

import "github.com/stackd/stackd/impl/events"

// Publish hands one of the repository's events to o.Events (nothing when
// it is nil); an event that cannot be published is logged, and the run
// goes on.
func (o Options) Publish(repoID string, ev events.Event) {
	if o.Events == nil {
		return
	}
	if err := o.Events.Publish(repoID, ev); err != nil {
		o.Logger.Error("event not published", "repo", repoID, "event", ev.Type, "err", err)
	}
}

package impl_test

import (
	"testing"

	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/refresh"
)

// TestChangeBeforeWatcherStartIsSeen: a branch created after the first
// view was built and before the watcher runs shows up once it does.
func TestChangeBeforeWatcherStartIsSeen(t *testing.T) {
	r := stackRepo(t)
	s := startServerNoStart(t, baseConfig(t, r.Dir), impl.Options{})
	ev := openEvents(t, s, "local")
	ev.until(t, "connected", "local")
	r.Git("branch", "between", "main")
	if b, _ := s.c.GetBranchWithResponse(ctx(t), "local", "between", nil); b.StatusCode() != 404 {
		t.Fatalf("the branch is in the view before any refresh: %d", b.StatusCode())
	}
	s.start(t)
	for {
		ev.until(t, "view_updated", "version")
		if b, _ := s.c.GetBranchWithResponse(ctx(t), "local", "between", nil); b.StatusCode() == 200 {
			break
		}
	}
	rf, _ := s.app.Refresh().Get("local")
	if h := rf.History(); h[0].Trigger != refresh.Watcher {
		t.Fatalf("the run that found it: %+v", h[0])
	}
}

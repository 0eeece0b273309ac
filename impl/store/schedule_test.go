package store

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestScheduleClaims: the first ScheduledDue stores the due time, later
// ones read it; a claim moves a due time only when it is due, so that of
// the processes that claim the same due time exactly one wins; SetDue
// stores the winner's next due time; the row goes with the repository.
func TestScheduleClaims(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		t0 := time.Unix(1700000000, 0).UTC()
		due, err := s.ScheduledDue(ctx, "Ticking", t0)
		if err != nil || !due.Equal(t0) {
			t.Fatalf("first ScheduledDue = %v, %v; want %v", due, err, t0)
		}
		if due, err = s.ScheduledDue(ctx, "ticking", t0.Add(time.Minute)); err != nil || !due.Equal(t0) {
			t.Fatalf("second ScheduledDue = %v, %v; want the stored %v", due, err, t0)
		}
		steps := []struct {
			name        string
			due, next   time.Time
			wantClaimed bool
			wantStored  time.Time
		}{
			{"not due yet", t0.Add(-time.Second), t0.Add(time.Hour), false, t0},
			{"due", t0, t0.Add(time.Hour), true, t0.Add(time.Hour)},
			{"the same due time again: lost", t0, t0.Add(2 * time.Hour), false, t0.Add(time.Hour)},
			{"the stored one, later", t0.Add(time.Hour), t0.Add(3 * time.Hour), true, t0.Add(3 * time.Hour)},
		}
		for _, st := range steps {
			stored, claimed, err := s.ClaimDue(ctx, "TICKING", st.due, st.next)
			if err != nil || claimed != st.wantClaimed || !stored.Equal(st.wantStored) {
				t.Fatalf("%s: ClaimDue = %v, %v, %v; want %v, %v", st.name, stored, claimed, err, st.wantStored, st.wantClaimed)
			}
		}
		if err := s.SetDue(ctx, "ticking", t0.Add(90*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if due, err = s.ScheduledDue(ctx, "ticking", t0); err != nil || !due.Equal(t0.Add(90*time.Minute)) {
			t.Fatalf("after SetDue: %v, %v", due, err)
		}
		// A claim of a repository nobody stored a due time for wins.
		if _, claimed, err := s.ClaimDue(ctx, "fresh", t0, t0.Add(time.Hour)); err != nil || !claimed {
			t.Fatalf("claim of an unstored due time: %v %v", claimed, err)
		}

		// Concurrent claims of one due time: exactly one wins.
		base := t0.Add(10 * time.Hour)
		if err := s.SetDue(ctx, "raced", base); err != nil {
			t.Fatal(err)
		}
		var wins atomic.Int64
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, claimed, err := s.ClaimDue(ctx, "raced", base, base.Add(time.Duration(i+1)*time.Minute))
				if err != nil {
					t.Error(err)
				}
				if claimed {
					wins.Add(1)
				}
			}()
		}
		wg.Wait()
		if got := wins.Load(); got != 1 {
			t.Fatalf("%d of 16 concurrent claims of one due time won, want 1", got)
		}

		if err := s.AddRepo(ctx, Repo{ID: "ticking", URL: "https://example.com/t.git", CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteRepo(ctx, "ticking"); err != nil {
			t.Fatal(err)
		}
		if due, err = s.ScheduledDue(ctx, "ticking", t0.Add(5*time.Hour)); err != nil || !due.Equal(t0.Add(5*time.Hour)) {
			t.Fatalf("a removed repository's due time survived: %v, %v", due, err)
		}
	})
}

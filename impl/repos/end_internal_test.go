package repos

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"

	"github.com/stackd/stackd/impl/events"
	"github.com/stackd/stackd/impl/mirror"
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/registry"
	"github.com/stackd/stackd/impl/store"
)

// noStore is a Store that holds nothing (the teardown's steps are the
// test's own).
type noStore struct{}

func (noStore) Ping(context.Context) error                  { return nil }
func (noStore) Repos(context.Context) ([]store.Repo, error) { return nil, nil }
func (noStore) AddRepo(context.Context, store.Repo) error   { return nil }
func (noStore) DeleteRepo(context.Context, string) error    { return nil }
func (noStore) DeleteSyncs(context.Context, string) error   { return nil }

// TestEnd: the one teardown stops the refresher before any step, runs
// forget before the mirror is closed and removeDir after it, keeps the
// repository registered when a step fails, and otherwise unregisters it
// and ends its event streams with repo_removed.
func TestEnd(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("boom")
	for _, tc := range []struct {
		name              string
		forgetErr, dirErr error
		wantSteps         []string
	}{
		{"forget fails", boom, nil, []string{"forget"}},
		{"removeDir fails", nil, boom, []string{"forget", "removeDir"}},
		{"success", nil, nil, []string{"forget", "removeDir"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mgr := refresh.NewManager(refresh.Options{})
			defer mgr.Close()
			broker := events.NewBroker(events.Limits{})
			defer broker.Close()
			root, err := mirror.NewRoot(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			s := New(Options{Refresh: mgr, Store: noStore{}, Mirrors: root, Streams: broker, Logger: slog.New(slog.DiscardHandler)})
			r := registry.NewMirror(root, registry.MirrorSpec{ID: "x", Config: mirror.Config{URL: "https://example.com/x.git"}, Origin: registry.OriginAPI})
			rf, err := s.register(r)
			if err != nil {
				t.Fatal(err)
			}
			sub, err := broker.Subscribe("x", "client")
			if err != nil {
				t.Fatal(err)
			}
			var steps []string
			stopped := func() bool { return rf.Trigger(refresh.Manual) == "" }
			err = s.end(ctx, r, ending{
				forget: func() error {
					if !stopped() {
						t.Error("forget ran before the refresher stopped")
					}
					steps = append(steps, "forget")
					return tc.forgetErr
				},
				removeDir: func() error {
					steps = append(steps, "removeDir")
					return tc.dirErr
				},
			})
			if !slices.Equal(steps, tc.wantSteps) {
				t.Errorf("steps %v, want %v", steps, tc.wantSteps)
			}
			_, registered := s.Get("x")
			_, managed := mgr.Get("x")
			if failed := tc.forgetErr != nil || tc.dirErr != nil; failed {
				if !errors.Is(err, boom) || !registered || !managed {
					t.Fatalf("a failed step: %v, registered %v, refresher %v", err, registered, managed)
				}
				return
			}
			if err != nil || registered || managed {
				t.Fatalf("teardown: %v, registered %v, refresher %v", err, registered, managed)
			}
			var got []string
			for ev := range sub.Events() {
				got = append(got, ev.Type)
			}
			if !slices.Equal(got, []string{events.RepoRemoved}) {
				t.Errorf("the stream got %v, want a last repo_removed", got)
			}
		})
	}
}

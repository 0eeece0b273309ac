package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestViewVersions: a view's version is decided by its content hash: the
// same hash keeps its version and build time (whoever commits it), a new
// hash gets a version above the stored one and the caller's, and a
// version never goes back.
func TestViewVersions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		t0 := time.Unix(1700000000, 123).UTC()
		if _, err := s.CurrentView(ctx, "api"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("CurrentView of nothing: %v", err)
		}
		steps := []struct {
			name        string
			hash        string
			local       int64
			at          time.Time
			wantVersion int64
			wantAt      time.Time
			wantCreated bool
		}{
			{"first view", "h1", 0, t0, 1, t0, true},
			{"same content from another replica", "h1", 0, t0.Add(time.Second), 1, t0, false},
			{"same content, local already there", "h1", 1, t0.Add(2 * time.Second), 1, t0, false},
			{"new content", "h2", 1, t0.Add(3 * time.Second), 2, t0.Add(3 * time.Second), true},
			{"new content from a replica behind", "h3", 0, t0.Add(4 * time.Second), 3, t0.Add(4 * time.Second), true},
			{"new content from a replica ahead", "h4", 9, t0.Add(5 * time.Second), 10, t0.Add(5 * time.Second), true},
			{"older content again is a new version", "h1", 10, t0.Add(6 * time.Second), 11, t0.Add(6 * time.Second), true},
			{"same content, local ahead: raised", "h1", 12, t0.Add(7 * time.Second), 12, t0.Add(6 * time.Second), false},
		}
		for _, st := range steps {
			v, created, err := s.CommitView(ctx, "API", st.hash, st.local, st.at)
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if v.Version != st.wantVersion || !v.BuiltAt.Equal(st.wantAt) || v.ContentHash != st.hash || created != st.wantCreated {
				t.Fatalf("%s: got %+v created=%v, want version %d at %v created=%v", st.name, v, created, st.wantVersion, st.wantAt, st.wantCreated)
			}
			cur, err := s.CurrentView(ctx, "api")
			if err != nil || cur != v {
				t.Fatalf("%s: CurrentView = %+v, %v; want %+v", st.name, cur, err, v)
			}
		}
		if _, _, err := s.CommitView(ctx, "api", "", 0, t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("empty hash: %v", err)
		}
		if _, err := s.CurrentView(ctx, "other"); !errors.Is(err, ErrNotFound) {
			t.Errorf("another repository: %v", err)
		}
	})
}

// TestConcurrentViewCommits: replicas committing the same content at once
// agree on one version; different contents get distinct versions.
func TestConcurrentViewCommits(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		const n = 8
		at := time.Now().UTC()
		var wg sync.WaitGroup
		got := make([]int64, n)
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, _, err := s.CommitView(ctx, "same", "h", 0, at.Add(time.Duration(i)))
				got[i], errs[i] = v.Version, err
			}()
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil || got[i] != 1 {
				t.Fatalf("commit %d of one content: version %d, %v", i, got[i], errs[i])
			}
		}
		seen := map[int64]bool{}
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, _, err := s.CommitView(ctx, "distinct", fmt.Sprintf("h%d", i), 0, at)
				got[i], errs[i] = v.Version, err
			}()
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil || seen[got[i]] {
				t.Fatalf("commit %d of distinct contents: version %d (seen: %v), %v", i, got[i], seen[got[i]], errs[i])
			}
			seen[got[i]] = true
		}
	})
}

// TestSharedKey: every caller, concurrent ones included, gets the key the
// first one created; another name is another key.
func TestSharedKey(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		const n = 8
		keys := make([][]byte, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				keys[i], errs[i] = s.SharedKey(ctx, "login", 32)
			}()
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil || len(keys[i]) != 32 || !bytes.Equal(keys[i], keys[0]) {
				t.Fatalf("key %d: %x, %v (first %x)", i, keys[i], errs[i], keys[0])
			}
		}
		other, err := s.SharedKey(ctx, "other", 32)
		if err != nil || bytes.Equal(other, keys[0]) {
			t.Fatalf("another name: %x, %v", other, err)
		}
		if _, err := s.SharedKey(ctx, "", 32); !errors.Is(err, ErrInvalid) {
			t.Errorf("no name: %v", err)
		}
	})
}

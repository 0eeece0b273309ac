package cluster_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stackd/stackd/gen/client"
	"github.com/stackd/stackd/impl/store/pgtest"
)

// TestReplicasListEachRemoteOncePerInterval: three replicas (processes of
// the built binary) on one database, with a short interval, serve three
// mirrors. The schedule is in the database and a replica runs a due
// interval run only once it claimed it there, so over several intervals
// each remote is listed (one upload-pack session at its proxy: nothing
// changes upstream, so nothing is fetched) about once per interval in
// all, not once per replica. The window is real time; only the counts of
// listings are asserted, with a tolerance of one partial interval at each
// end (and the jitter's ±10%).
func TestReplicasListEachRemoteOncePerInterval(t *testing.T) {
	const interval = 400 * time.Millisecond
	pg := pgtest.Shared(t)
	rc := replicaConfig{
		databaseURL: pg.NewDatabase(t),
		dataDir:     filepath.Join(t.TempDir(), "shared"),
		extra:       []string{"--sync-interval", interval.String()},
	}
	a := startReplica(t, "a", rc)
	b := startReplica(t, "b", rc)
	c := startReplica(t, "c", rc)
	all := []*replica{a, b, c}

	ups := map[string]*upstream{}
	for i := range 3 {
		id := fmt.Sprintf("fleet-%d", i)
		ups[id] = newUpstream(t, id+".git")
		created, err := a.c.CreateRepoWithResponse(ctx(t), client.RepoCreate{Url: ups[id].url, Id: ptr(id)})
		if err != nil || created.JSON201 == nil {
			t.Fatalf("onboarding %s: %v %d %s", id, err, created.StatusCode(), created.Body)
		}
	}
	for id := range ups {
		for _, r := range all {
			within(t, 10*time.Second, id+" on "+r.name, func() bool {
				code, _, _ := r.do(t, "GET", "/api/v1/repos/"+id, nil)
				return code == 200
			})
		}
	}

	// The observation window: several intervals of real time.
	before := map[string]int{}
	for id, up := range ups {
		before[id], _, _ = up.proxy.Stats()
	}
	start := time.Now()
	<-time.After(8 * interval) // the window observed, not a synchronisation
	elapsed := time.Since(start)
	// A repository's due times are at least 0.9 intervals apart (an
	// interval ±10% after the previous due time, or whole intervals after
	// it when a run ended late), and a run starts at its due time or
	// later: at most elapsed/0.9 intervals fit, plus one started before
	// the window. Runs take a little time, so at least half as many.
	most := int(float64(elapsed)/(0.9*float64(interval))) + 1
	least := int(float64(elapsed)/(2*float64(interval))) - 1
	for id, up := range ups {
		n, packs, _ := up.proxy.Stats()
		listed := n - before[id]
		t.Logf("%s: %d listings in %s (%.1f intervals), %d packs in all", id, listed, elapsed.Round(time.Millisecond), float64(elapsed)/float64(interval), packs)
		if listed > most {
			t.Errorf("%s listed %d times in %s by three replicas: more than once per interval (at most %d)", id, listed, elapsed, most)
		}
		if listed < least {
			t.Errorf("%s listed %d times in %s: the interval runs do not run (at least %d)", id, listed, elapsed, least)
		}
	}
	// The replicas took turns: interval runs in the history name who ran them.
	byReplica := map[string]int{}
	for id := range ups {
		res, err := a.c.ListSyncsWithResponse(ctx(t), id, &client.ListSyncsParams{})
		if err != nil || res.JSON200 == nil {
			t.Fatalf("syncs of %s: %v", id, err)
		}
		for _, s := range *res.JSON200 {
			if s.Trigger == client.Interval && s.Replica != nil {
				byReplica[*s.Replica]++
			}
		}
	}
	t.Logf("interval runs by replica: %v", byReplica)
}

package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stackd/stackd/impl/webhook"
)

// The webhook storm: signed GitHub push deliveries spread evenly over a
// span, round-robin across the first repositories of the fleet, each
// delivery preceded by its push (a new commit on one branch, published
// upstream). Every answer must be 202 or 204; each repository may be
// fetched at most once per quiet window of its deliveries (the server's
// --webhook-debounce and --webhook-max-delay), plus one; and every pushed
// tip must be in its view afterwards.

// stormPush is one delivery and the push it announces.
type stormPush struct {
	repo    int
	ref     string
	sha     string
	publish func() error
}

// quietWindows counts the refresh windows a debouncer with the given quiet
// window and longest delay makes of deliveries sent at times (sorted): a
// window ends when the deliveries pause for debounce, or when it has lasted
// maxDelay.
func quietWindows(times []time.Time, debounce, maxDelay time.Duration) int {
	if len(times) == 0 {
		return 0
	}
	windows := 1
	start, last := times[0], times[0]
	for _, t := range times[1:] {
		if t.Sub(last) >= debounce || t.Sub(start) >= maxDelay {
			windows++
			start = t
		}
		last = t
	}
	return windows
}

// storm runs the webhook storm against the fleet server sd (n repositories).
func (b *bench) storm(ctx context.Context, sd *stackd, api *apiClient, metrics string, fr *fleetRun, n int) {
	st := b.opt.fleet.storm
	repos := min(st.repos, n)
	b.logf("== webhook storm: %s deliveries in %s over %d repositories", fmtCount(st.deliveries), st.span, repos)
	lat, fetch, lost := b.res.at("fstorm", n), b.res.at("fstormfetch", n), b.res.at("fstormlost", n)
	fail := func(err error) {
		lat.stackd.fail(err)
		fetch.stackd.fail(err)
		lost.stackd.fail(err)
		b.logf("webhook storm: %v", err)
	}

	pushes := make([]stormPush, st.deliveries)
	final := map[[2]string]string{} // repo id, ref -> the last pushed tip
	for j := range pushes {
		repo, k := j%repos, j/repos
		ref := "refs/heads/" + stackBranchK(k%b.opt.fleet.branches)
		sha, publish, err := fr.tips.push(fr.gitDir(repo), repo, ref)
		if err != nil {
			fail(err)
			return
		}
		pushes[j] = stormPush{repo: repo, ref: ref, sha: sha, publish: publish}
		final[[2]string{fleetID(repo), ref}] = sha
	}
	before, err := scrape(ctx, metrics)
	if err != nil {
		fail(err)
		return
	}
	fdsBefore, fdErr := procFDs(sd.cmd.Process.Pid)

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: b.opt.timeout}
	defer hc.CloseIdleConnections()
	type answer struct {
		status int
		took   time.Duration
		sent   time.Time
		err    error
	}
	answers := make([]answer, len(pushes))
	work := make(chan int)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for j := range work {
				p := pushes[j]
				if err := p.publish(); err != nil {
					answers[j].err = err
					continue
				}
				body := fmt.Sprintf(`{"ref":%q,"after":%q,"repository":{"full_name":"fleet/%s"}}`, p.ref, p.sha, fleetID(p.repo))
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, sd.base+"/api/v1/webhooks/github", strings.NewReader(body))
				if err != nil {
					answers[j].err = err
					continue
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(webhook.HeaderEvent, webhook.EventPush)
				req.Header.Set(webhook.HeaderDelivery, fmt.Sprintf("bench-storm-%d-%d-%d", n, j, time.Now().UnixNano()))
				req.Header.Set(webhook.HeaderSignature, webhook.Sign([]byte(stormSecret), []byte(body)))
				sent := time.Now()
				resp, err := hc.Do(req)
				took := time.Since(sent)
				if err != nil {
					answers[j] = answer{err: err, sent: sent}
					continue
				}
				resp.Body.Close()
				answers[j] = answer{status: resp.StatusCode, took: took, sent: sent}
			}
		})
	}
	start := time.Now()
	for j := range pushes {
		at := start.Add(st.span * time.Duration(j) / time.Duration(len(pushes)))
		if d := time.Until(at); d > 0 {
			time.Sleep(d) // pacing the deliveries
		}
		if ctx.Err() != nil {
			break
		}
		work <- j
	}
	close(work)
	wg.Wait()
	if ctx.Err() != nil {
		fail(ctx.Err())
		return
	}

	var took []time.Duration
	bad := map[int]int{}
	var firstErr error
	sent := map[int][]time.Time{}
	for j, a := range answers {
		switch {
		case a.err != nil:
			bad[-1]++
			if firstErr == nil {
				firstErr = a.err
			}
		case a.status != http.StatusAccepted && a.status != http.StatusNoContent:
			bad[a.status]++
		default:
			took = append(took, a.took)
			sent[pushes[j].repo] = append(sent[pushes[j].repo], a.sent)
		}
	}
	slices.Sort(took)
	okAll := len(bad) == 0
	b.res.fact("storm answered 202/204", n, okAll, fmt.Sprintf("answers other than 202/204 by status (-1: no answer) %v; first error %v", bad, firstErr))
	if len(took) > 0 {
		lat.stackd.add(percentile(took, 99).Seconds())
		lat.stackd.extra = fmt.Sprintf("p50 %s, %d deliveries", fmtDuration(percentile(took, 50)), len(took))
		if !okAll {
			lat.stackd.extra += fmt.Sprintf(", %d not 202/204", len(answers)-len(took))
		}
	} else {
		lat.stackd.fail(fmt.Errorf("no delivery answered 202/204: %v", firstErr))
	}
	b.logf("webhook storm: %d answered 202/204 in %s, p99 %s; others %v", len(took), fmtDuration(time.Since(start)), fmtDuration(percentile(took, 99)), bad)

	// Every pushed tip in its view: polled until the debounced runs have
	// served them, or the longest delay and a sync timeout have passed.
	pending := make([][2]string, 0, len(final))
	for k := range final {
		pending = append(pending, k)
	}
	deadline := time.Now().Add(st.maxDelay + b.opt.timeout)
	for len(pending) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		var mu sync.Mutex
		var next [][2]string
		_ = forEach(ctx, len(pending), 8, func(ctx context.Context, i int) error {
			k := pending[i]
			sha, err := api.branchSha(ctx, k[0], strings.TrimPrefix(k[1], "refs/heads/"))
			if err != nil || sha != final[k] {
				mu.Lock()
				next = append(next, k)
				mu.Unlock()
			}
			return nil
		})
		pending = next
		if len(pending) > 0 {
			time.Sleep(100 * time.Millisecond) // polling the views
		}
	}
	lost.stackd.add(float64(len(pending)))
	b.res.fact("storm lost no push", n, len(pending) == 0, fmt.Sprintf("%d pushed tips not in their views", len(pending)))
	b.logf("webhook storm: %d of %d pushed tips missing from their views after %s", len(pending), len(final), fmtDuration(time.Since(start)))

	// Fetches per repository, once the server is idle again.
	idle := time.Now().Add(b.opt.timeout)
	var after string
	for {
		after, err = scrape(ctx, metrics)
		if err != nil {
			fetch.stackd.fail(err)
			return
		}
		busy := metricSum(after, "stackd_sync_runs_queued") + metricSum(after, "stackd_sync_runs_running")
		if busy == 0 || time.Now().After(idle) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling the server's queue
	}
	// Every fetch of the storm added a pack to its mirror: the server's
	// descriptors, once idle, say whether it keeps them open (for
	// reading; no target).
	if fdsAfter, err := procFDs(sd.cmd.Process.Pid); err == nil && fdErr == nil {
		b.logf("webhook storm: the server holds %d file descriptors once idle, %d before the storm", fdsAfter, fdsBefore)
	}
	const sessions = "stackd_mirror_upload_pack_sessions_total"
	if !strings.Contains(after, sessions) {
		fetch.stackd.na = "no " + sessions + " metric"
		return
	}
	was, now := metricByLabel(before, sessions, "repo"), metricByLabel(after, sessions, "repo")
	worst, worstRepo, worstFetches, worstWindows := -1<<30, "", 0, 0
	for r := range repos {
		times := sent[r]
		slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
		allowed := quietWindows(times, st.debounce, st.maxDelay) + 1
		got := int(now[fleetID(r)] - was[fleetID(r)])
		if got-allowed > worst {
			worst, worstRepo, worstFetches, worstWindows = got-allowed, fleetID(r), got, allowed-1
		}
	}
	fetch.stackd.add(float64(max(0, worst)))
	fetch.stackd.extra = fmt.Sprintf("worst %s: %d fetches, %d quiet windows", worstRepo, worstFetches, worstWindows)
	b.logf("webhook storm: worst repository %s: %d fetches for %d quiet windows", worstRepo, worstFetches, worstWindows)
}

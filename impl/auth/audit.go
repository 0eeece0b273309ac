package auth

// The audit log: what the gate writes for every mutating operation, and
// what keeps it bounded.
//
//   - Every value an entry stores is bounded and escaped (auditText): the
//     route is the operation's template from the contract, the repository
//     (the repoID parameter, or the id a handler noted: NoteAuditRepo) is cut to MaxAuditParam bytes with non-printable bytes
//     escaped, the actor to maxAuditActor.
//   - A failed anonymous request (no principal, status 400 or more) is not
//     written on its own: it is counted in an aggregate of its minute,
//     keyed by (address group, operation, route, outcome), and each
//     aggregate is written once, as one entry whose Requests says how many
//     requests it stands for, when its minute is over (or at shutdown).
//     So an anonymous client adds at most one entry per route and outcome
//     a minute, whatever it sends; at most maxAggregates address groups
//     are told apart in a minute, the rest are counted together under the
//     client "*". Signed-in callers and successful requests get an entry
//     each (they are rate limited per user, and a success is a change
//     worth its own line).
//   - The log is pruned by age (Config.AuditMaxAge) and by count
//     (Config.AuditMaxEntries): at start-up and every hour (Sweeper), and
//     after every auditPruneEvery entries this process writes, in the
//     background, one prune at a time, in batches (store.PruneAudit).

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/validate"
)

// Defaults of the audit log's retention (Config.AuditMaxAge and
// Config.AuditMaxEntries).
const (
	DefaultAuditMaxAge     = 90 * 24 * time.Hour
	DefaultAuditMaxEntries = 100000
)

const (
	// MaxAuditParam bounds the repository parameter an entry stores, in
	// bytes, escapes and the cut mark included.
	MaxAuditParam = 128
	// maxAuditActor bounds the actor (an e-mail address or a subject).
	maxAuditActor = 256
	// maxAuditClient bounds the client (an address or address group; the
	// raw peer when it was none).
	maxAuditClient = 64
	// auditWindow is the period of an aggregate of failed anonymous
	// requests.
	auditWindow = time.Minute
	// maxAggregates bounds the address groups told apart in one window.
	maxAggregates = 1024
	// auditPruneEvery is how many entries this process writes between
	// two prunes (besides the hourly one).
	auditPruneEvery = 1000
	// overflowClient is the client of the aggregates of the address
	// groups past maxAggregates.
	overflowClient = "*"
	// auditWriteTimeout bounds writing one batch of audit entries that
	// no request waits for.
	auditWriteTimeout = 30 * time.Second
)

// auditText returns s as an audit entry stores it: printable characters
// as they are, a backslash doubled, everything else (control and format
// characters, bytes that are not UTF-8) escaped as in a Go string literal
// (\x00, \n, \u202e), and the result cut at a character or escape to at
// most limit bytes, ending in "…" when cut.
func auditText(s string, limit int) string {
	const mark = "…"
	var b strings.Builder
	cut := -1 // the length of b before the first piece past limit-len(mark)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var piece string
		switch {
		case r == utf8.RuneError && size == 1:
			piece = fmt.Sprintf(`\x%02x`, s[i])
		case r == '\\':
			piece = `\\`
		case unicode.IsPrint(r):
			piece = s[i : i+size]
		default:
			q := strconv.QuoteRuneToASCII(r)
			piece = q[1 : len(q)-1]
		}
		i += size
		if cut < 0 && b.Len()+len(piece) > limit-len(mark) {
			cut = b.Len()
		}
		if b.Len()+len(piece) > limit {
			return b.String()[:cut] + mark
		}
		b.WriteString(piece)
	}
	return b.String()
}

// aggKey identifies an aggregate of failed anonymous requests.
type aggKey struct {
	client, action, route, outcome string
}

// audit records a mutating operation: at once, or counted in the
// aggregate of its minute (a failed anonymous request).
func (a *Auth) audit(r *http.Request, route *validate.Route, p *Principal, ip string, rec *recorder) {
	e := store.AuditEntry{
		At:       a.now(),
		Actor:    MethodAnonymous,
		Method:   MethodAnonymous,
		Action:   opName(route),
		Route:    route.Path,
		Repo:     auditText(pathParam(route.Path, r.URL.EscapedPath(), "repoID"), MaxAuditParam),
		Outcome:  rec.outcome(),
		Client:   auditText(ip, maxAuditClient),
		Requests: 1,
	}
	if e.Repo == "" && rec.repo != "" {
		e.Repo = auditText(rec.repo, MaxAuditParam)
	}
	if p != nil {
		e.Actor, e.Subject, e.Method = auditText(p.actor(), maxAuditActor), auditText(p.Subject, maxAuditActor), p.Method
	}
	if p == nil && rec.final() >= http.StatusBadRequest {
		e.Client = auditText(a.group(ip), maxAuditClient)
		a.aggregate(e)
		return
	}
	a.writeAudit(context.WithoutCancel(r.Context()), e)
}

// aggregate counts e (a failed anonymous request) in the aggregate of its
// minute. The aggregates of a minute that is over are written in the
// background.
func (a *Auth) aggregate(e store.AuditEntry) {
	a.aggMu.Lock()
	defer a.aggMu.Unlock()
	if due := a.takeDueLocked(e.At); len(due) > 0 {
		a.bg.Go(func() { a.writeAggregates(due) })
	}
	if a.aggWindow.IsZero() {
		a.aggWindow = e.At.Truncate(auditWindow)
	}
	k := aggKey{client: e.Client, action: e.Action, route: e.Route, outcome: e.Outcome}
	if cur, ok := a.aggs[k]; ok {
		cur.Requests++
		cur.LastAt = e.At
		return
	}
	if len(a.aggs) >= maxAggregates {
		k.client = overflowClient
		if cur, ok := a.aggs[k]; ok {
			cur.Requests++
			cur.LastAt = e.At
			return
		}
		e.Client = overflowClient
		e.Repo = ""
	}
	e.LastAt = e.At
	a.aggs[k] = &e
}

// takeDueLocked returns the aggregates of the current window when now is
// past it, and starts a new window (a.aggMu held).
func (a *Auth) takeDueLocked(now time.Time) []store.AuditEntry {
	if a.aggWindow.IsZero() || now.Before(a.aggWindow.Add(auditWindow)) {
		return nil
	}
	return a.takeAllLocked()
}

func (a *Auth) takeAllLocked() []store.AuditEntry {
	out := make([]store.AuditEntry, 0, len(a.aggs))
	for _, e := range a.aggs {
		out = append(out, *e)
	}
	clear(a.aggs)
	a.aggWindow = time.Time{}
	return out
}

func (a *Auth) writeAggregates(es []store.AuditEntry) {
	ctx, cancel := context.WithTimeout(context.Background(), auditWriteTimeout)
	defer cancel()
	for _, e := range es {
		a.writeAudit(ctx, e)
	}
}

// writeAudit logs e and stores it; every auditPruneEvery entries it starts
// a prune in the background.
func (a *Auth) writeAudit(ctx context.Context, e store.AuditEntry) {
	a.log.Info("audit", "actor", e.Actor, "method", e.Method, "action", e.Action, "route", e.Route, "repo", e.Repo,
		"outcome", e.Outcome, "client", e.Client, "requests", e.Requests)
	if a.store == nil {
		return
	}
	if err := a.store.Audit(ctx, e); err != nil {
		a.log.Error("audit entry not stored", "err", err, "action", e.Action)
		return
	}
	if a.audited.Add(1)%auditPruneEvery == 0 {
		a.bg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), auditWriteTimeout)
			defer cancel()
			a.PruneAudit(ctx)
		})
	}
}

// FlushAudit writes the aggregates of failed anonymous requests whose
// minute is over (all of them when all is set, as at shutdown), and waits
// for the audit writes and prunes running in the background.
func (a *Auth) FlushAudit(all bool) {
	a.aggMu.Lock()
	var due []store.AuditEntry
	if all {
		due = a.takeAllLocked()
	} else {
		due = a.takeDueLocked(a.now())
	}
	a.aggMu.Unlock()
	if len(due) > 0 {
		a.writeAggregates(due)
	}
	a.bg.Wait()
}

// AuditFlusher writes the aggregates whose minute is over on each tick of
// every, until ctx is done or every closes. (Aggregates are also written
// when a later failed anonymous request arrives: the ticker makes sure a
// quiet minute is written too.) What is open at shutdown is written by
// FlushAudit(true), which the server calls before it closes the store.
func (a *Auth) AuditFlusher(ctx context.Context, every <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-every:
			if !ok {
				return
			}
			a.FlushAudit(false)
		}
	}
}

// PruneAudit applies the audit log's retention (Config.AuditMaxAge,
// Config.AuditMaxEntries) once. Only one prune runs at a time in a
// process: a call while one runs returns at once.
func (a *Auth) PruneAudit(ctx context.Context) {
	if a.store == nil || !a.pruning.CompareAndSwap(false, true) {
		return
	}
	defer a.pruning.Store(false)
	var before time.Time
	if a.cfg.AuditMaxAge > 0 {
		before = a.now().Add(-a.cfg.AuditMaxAge)
	}
	keep := max(a.cfg.AuditMaxEntries, 0)
	if before.IsZero() && keep == 0 {
		return
	}
	n, err := a.store.PruneAudit(ctx, before, keep)
	if err != nil {
		a.log.Error("audit log prune failed", "err", err)
		return
	}
	if n > 0 {
		a.log.Info("audit log pruned", "deleted", n)
	}
}

// pathParam extracts the named parameter from an escaped path by its
// template, e.g. repoID from /api/v1/repos/{repoID}/sync.
func pathParam(template, path, name string) string {
	want := "{" + name + "}"
	tsegs := strings.Split(template, "/")
	for i, s := range tsegs {
		if s != want {
			continue
		}
		// Only the segment itself is split out: a long path is not
		// copied segment by segment.
		seg := path
		for range i {
			_, seg, _ = strings.Cut(seg, "/")
		}
		seg, _, _ = strings.Cut(seg, "/")
		if v, err := url.PathUnescape(seg); err == nil {
			return v
		}
		return seg
	}
	return ""
}

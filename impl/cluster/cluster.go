// Package cluster ties together the stackd processes (replicas) that
// share one PostgreSQL database and one data directory, with what only
// PostgreSQL offers: advisory locks and LISTEN/NOTIFY.
//
// # Leases
//
// A lease is a session-level advisory lock (pg_advisory_lock) held on a
// connection of its own for as long as the lease is held, and released
// with pg_advisory_unlock. Whoever holds it, no other session can take
// it: Lease waits (in the server, without polling) until it is free,
// TryLease gives up at once. When the holder dies (a crash, SIGKILL), its
// connection closes and the server releases the lock at once: the next
// waiter gets it without any expiry to wait for. A holder that vanishes
// from the network (a host that is powered off) is noticed by the
// server's TCP keepalive, which lease connections set to about 25 s
// (tcp_keepalives_idle 10 s, interval 5 s, 3 probes). A holder checks its
// lease connection every LeaseCheck (default 2 s): when the connection
// broke (the database restarted, the network failed), the lease reports
// itself lost, so its holder stops before the server could hand the lock
// to another replica. Lease names are hashed to the lock's key (the
// two-integer form, class 0x73746b64): two names that collide only
// serialise each other.
//
// A cancelled wait is cancelled in the server (a cancel request), and its
// connection is closed, so a lock granted at the last moment dies with
// it: a waiter that gave up never holds the lease afterwards.
//
// # Notifications
//
// Notify sends a Message to the other replicas on one channel
// (pg_notify, asynchronously and in order; a NOTIFY payload is at most
// 8000 bytes, so event data that does not fit is left out and the
// receiver reads the sync from the store). Listen holds one connection
// that LISTENs and hands every other process's messages to a Handler;
// when that connection breaks it reconnects (with backoff) and calls
// Handler.Connected again, since notices sent meanwhile are lost: the
// handler catches up then. A process ignores its own messages (each
// process has a random instance id).
//
// Every connection is named in pg_stat_activity: application_name
// "stackd <replica> lease" or "stackd <replica> listen".
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stackd/stackd/impl/redact"
	"github.com/stackd/stackd/impl/store"
)

// Channel is the LISTEN/NOTIFY channel of the replicas.
const Channel = "stackd_cluster"

// lockClass is the first key of every lease's advisory lock: "stkd".
const lockClass = 0x73746b64

// maxPayload is PostgreSQL's limit of a NOTIFY payload (less one byte).
const maxPayload = 7999

// Options configure a Cluster.
type Options struct {
	// Replica is this process's --replica-id (in messages and connection
	// names).
	Replica string
	// Leases bounds the connections that hold or wait for leases.
	// Default 8.
	Leases int
	// LeaseCheck is how often a held lease's connection is checked.
	// Default 2s.
	LeaseCheck time.Duration
	// Logger receives the cluster's log lines (nil: none).
	Logger *slog.Logger
}

// Cluster is this process's membership of the replicas that share a
// PostgreSQL database. It is safe for concurrent use.
type Cluster struct {
	opts     Options
	pool     *pgxpool.Pool // the store's: notifications
	leases   *pgxpool.Pool // connections that hold or wait for leases
	listen   *pgx.ConnConfig
	instance string
	log      *slog.Logger

	out    chan Message
	stop   chan struct{}
	closed sync.Once
	wg     sync.WaitGroup
}

// New joins the replicas of the database pg; Close leaves. Nothing is
// connected until the first Lease, Notify or Listen.
func New(pg *store.Postgres, opts Options) (*Cluster, error) {
	if opts.Leases <= 0 {
		opts.Leases = 8
	}
	if opts.LeaseCheck <= 0 {
		opts.LeaseCheck = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	cfg := pg.Pool().Config()
	cfg.MaxConns = int32(opts.Leases)
	cfg.MinConns = 0
	conn := cfg.ConnConfig
	params := map[string]string{}
	for k, v := range conn.RuntimeParams {
		params[k] = v
	}
	// The server notices a holder that vanished from the network within
	// about 25 s (these are ignored on Unix sockets, where a dead peer is
	// noticed at once).
	params["tcp_keepalives_idle"] = "10"
	params["tcp_keepalives_interval"] = "5"
	params["tcp_keepalives_count"] = "3"
	listen := conn.Copy()
	listen.RuntimeParams = copyParams(params)
	listen.RuntimeParams["application_name"] = name(opts.Replica, "listen")
	conn.RuntimeParams = params
	conn.RuntimeParams["application_name"] = name(opts.Replica, "lease")
	// A lease wait that is given up is cancelled in the server.
	conn.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: time.Second}
	}
	leases, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c := &Cluster{
		opts: opts, pool: pg.Pool(), leases: leases, listen: listen, instance: hex.EncodeToString(id[:]),
		log: opts.Logger, out: make(chan Message, 1024), stop: make(chan struct{}),
	}
	c.wg.Add(1)
	go c.send()
	return c, nil
}

func copyParams(p map[string]string) map[string]string {
	out := make(map[string]string, len(p)+1)
	for k, v := range p {
		out[k] = v
	}
	return out
}

// name is a connection's application_name (at most 63 bytes).
func name(replica, role string) string {
	n := "stackd " + replica + " " + role
	if len(n) > 63 {
		n = n[:63]
	}
	return n
}

// Instance is this process's random id (the From of its messages).
func (c *Cluster) Instance() string { return c.instance }

// Close stops sending (messages still queued are sent first, for up to a
// few seconds) and closes the lease connections: leases still held are
// released by the server.
func (c *Cluster) Close() {
	c.closed.Do(func() {
		close(c.stop)
		c.wg.Wait()
		c.leases.Close()
	})
}

// unavailable classifies a driver error: store.ErrUnavailable when the
// database cannot be reached.
func unavailable(err error) error {
	if err != nil && store.Unavailable(err) && !errors.Is(err, store.ErrUnavailable) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// key is the advisory lock key of a lease name.
func key(lease string) (int32, int32) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(lease))
	return lockClass, int32(h.Sum32())
}

// Lease is a held lease.
type Lease struct {
	c        *Cluster
	name     string
	conn     *pgxpool.Conn
	cls, obj int32
	lost     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
}

// Lease waits until this process holds the lease called name, or ctx
// ends. An unreachable database is an error wrapping
// store.ErrUnavailable.
func (c *Cluster) Lease(ctx context.Context, name string) (*Lease, error) {
	conn, err := c.leases.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: lease %s: %w", name, unavailable(err))
	}
	cls, obj := key(name)
	_, err = conn.Exec(ctx, "SELECT pg_advisory_lock($1, $2)", cls, obj)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err() // granted as the wait was given up: the caller is gone
	}
	if err != nil {
		destroy(conn)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("cluster: lease %s: %w", name, ctx.Err())
		}
		return nil, fmt.Errorf("cluster: lease %s: %w", name, unavailable(err))
	}
	return c.hold(name, conn, cls, obj), nil
}

// TryLease takes the lease called name if it is free, without waiting:
// ok is false when another session holds it.
func (c *Cluster) TryLease(ctx context.Context, name string) (l *Lease, ok bool, err error) {
	conn, err := c.leases.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("cluster: lease %s: %w", name, unavailable(err))
	}
	cls, obj := key(name)
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, $2)", cls, obj).Scan(&ok); err != nil {
		destroy(conn)
		return nil, false, fmt.Errorf("cluster: lease %s: %w", name, unavailable(err))
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	return c.hold(name, conn, cls, obj), true, nil
}

func (c *Cluster) hold(name string, conn *pgxpool.Conn, cls, obj int32) *Lease {
	l := &Lease{c: c, name: name, conn: conn, cls: cls, obj: obj,
		lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go l.watch()
	return l
}

// destroy closes a pool connection instead of returning it: its session
// ends, and with it any lock it held or was about to be granted.
func destroy(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Hijack().Close(ctx)
}

// watch owns the lease's connection while the lease is held: it checks it
// every LeaseCheck and releases the lock on Release.
func (l *Lease) watch() {
	defer close(l.done)
	t := time.NewTicker(l.c.opts.LeaseCheck)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			var released bool
			err := l.conn.QueryRow(ctx, "SELECT pg_advisory_unlock($1, $2)", l.cls, l.obj).Scan(&released)
			cancel()
			if err != nil || !released {
				destroy(l.conn) // the session's end releases the lock
			} else {
				l.conn.Release()
			}
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := l.conn.Exec(ctx, "SELECT 1")
			cancel()
			if err != nil {
				l.c.log.Warn("lease lost: its database connection broke", "lease", l.name, "err", redact.Error(err))
				close(l.lost)
				destroy(l.conn)
				return
			}
		}
	}
}

// Lost is closed when the lease was lost: its connection broke, so the
// server may have given it to another session.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Release gives the lease up and waits until the server has released it
// (or the connection that held it is closed). It is idempotent.
func (l *Lease) Release() {
	l.once.Do(func() { close(l.stop) })
	<-l.done
}

// Message is what replicas tell each other.
type Message struct {
	// From is the sender's instance id (random per process); Replica
	// its --replica-id.
	From    string `json:"from"`
	Replica string `json:"replica,omitempty"`
	// Kind says what happened (the Kind constants).
	Kind string `json:"kind"`
	// Repo is the repository it happened to.
	Repo string `json:"repo"`
	// Version is the view version published (KindView).
	Version int64 `json:"version,omitempty"`
	// Event is the event type relayed (KindEvent), Sync the id of its
	// sync, Data its data, when it fits in a notification.
	Event string          `json:"event,omitempty"`
	Sync  string          `json:"sync,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// The kinds of messages.
const (
	KindView    = "view"    // a new view version was published
	KindEvent   = "event"   // an event of a sync, for event-stream clients
	KindAdded   = "added"   // a repository was onboarded (stored and cloned)
	KindRemoved = "removed" // a repository was removed (no longer stored)
)

// Notify queues m for the other replicas, in order, without waiting. A
// message that does not fit in a notification loses its Data. When the
// queue is full (the database has not answered for a while), m is
// dropped and logged: replicas catch up when their own listening
// connection comes back.
func (c *Cluster) Notify(m Message) {
	m.From, m.Replica = c.instance, c.opts.Replica
	select {
	case <-c.stop:
		return
	default:
	}
	select {
	case c.out <- m:
	default:
		c.log.Warn("cluster notice dropped: too many waiting", "kind", m.Kind, "repo", m.Repo)
	}
}

// send delivers the queued messages.
func (c *Cluster) send() {
	defer c.wg.Done()
	for {
		select {
		case m := <-c.out:
			c.deliver(m)
		case <-c.stop:
			deadline := time.After(3 * time.Second)
			for {
				select {
				case m := <-c.out:
					c.deliver(m)
				case <-deadline:
					return
				default:
					return
				}
			}
		}
	}
}

func (c *Cluster) deliver(m Message) {
	payload, err := encode(m)
	if err != nil {
		c.log.Error("cluster notice not encoded", "kind", m.Kind, "repo", m.Repo, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.pool.Exec(ctx, "SELECT pg_notify($1, $2)", Channel, payload); err != nil {
		c.log.Warn("cluster notice not sent", "kind", m.Kind, "repo", m.Repo, "err", redact.Error(err))
	}
}

// encode is m's payload; Data goes when the whole does not fit.
func encode(m Message) (string, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	if len(b) > maxPayload && m.Data != nil {
		m.Data = nil
		if b, err = json.Marshal(m); err != nil {
			return "", err
		}
	}
	if len(b) > maxPayload {
		return "", fmt.Errorf("cluster: a %s notice of %d bytes does not fit", m.Kind, len(b))
	}
	return string(b), nil
}

// Handler receives what the other replicas say.
type Handler interface {
	// Connected is called each time the listening connection is ready:
	// first is true the first time. After a reconnection (first false)
	// notices sent meanwhile were lost: catch up.
	Connected(first bool)
	// Message is called, in order, with every other process's message.
	// It should not block for long: the next waits.
	Message(m Message)
}

// Listen listens until ctx ends, reconnecting when the connection breaks
// (after 100 ms, doubling up to 5 s while the database does not answer).
func (c *Cluster) Listen(ctx context.Context, h Handler) {
	first := true
	backoff := 100 * time.Millisecond
	down := false
	for ctx.Err() == nil {
		conn, err := c.connectListener(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !down {
				c.log.Warn("cannot listen to the other replicas; retrying", "err", redact.Error(err))
				down = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		if down || !first {
			c.log.Info("listening to the other replicas again")
		}
		down, backoff = false, 100*time.Millisecond
		h.Connected(first)
		first = false
		for {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				if ctx.Err() == nil {
					c.log.Warn("lost the connection that listens to the other replicas; reconnecting", "err", redact.Error(err))
				}
				break
			}
			var m Message
			if err := json.Unmarshal([]byte(n.Payload), &m); err != nil {
				c.log.Warn("unreadable cluster notice", "err", err)
				continue
			}
			if m.From == c.instance {
				continue
			}
			h.Message(m)
		}
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Close(cctx)
		cancel()
	}
}

func (c *Cluster) connectListener(ctx context.Context) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, c.listen.Copy())
	if err != nil {
		return nil, unavailable(err)
	}
	if _, err := conn.Exec(cctx, "LISTEN "+pgx.Identifier{Channel}.Sanitize()); err != nil {
		_ = conn.Close(context.Background())
		return nil, unavailable(err)
	}
	return conn, nil
}

// LeaseName is the name of the lease of a repository's mirror: one
// refresh of it at a time, cluster-wide (ids are compared
// case-insensitively, like everywhere else).
func LeaseName(repoID string) string { return "repo:" + strings.ToLower(repoID) }

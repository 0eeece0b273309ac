package cluster

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stackd/stackd/impl/store"
	"github.com/stackd/stackd/impl/store/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// join makes one replica of the database at url: its store and cluster.
func join(t *testing.T, url, replica string) *Cluster {
	t.Helper()
	st, err := store.OpenPostgres(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(st, Options{Replica: replica, LeaseCheck: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = st.Close() })
	return c
}

func bg(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // failure guard
	t.Cleanup(cancel)
	return ctx
}

// superuser runs a statement as the cluster's superuser, on its own
// connection.
func superuser(t *testing.T, url, q string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(bg(t), url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(bg(t), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestLeaseIsExclusive: while one replica holds a lease, another's
// TryLease fails and its Lease waits; it gets the lease once released.
// leaseLater waits for c's lease name in the background; the channel
// receives the lease once held (nil after an error, which fails the test).
func leaseLater(t *testing.T, c *Cluster, name string) <-chan *Lease {
	got := make(chan *Lease, 1)
	go func() {
		l, err := c.Lease(bg(t), LeaseName(name))
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	return got
}

// Other names are independent.
func TestLeaseIsExclusive(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	a, b := join(t, url, "a"), join(t, url, "b")
	held, err := a.Lease(bg(t), LeaseName("api"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.TryLease(bg(t), LeaseName("API")); ok || err != nil {
		t.Fatalf("TryLease of a held lease: %v, %v", ok, err)
	}
	other, ok, err := b.TryLease(bg(t), LeaseName("web"))
	if !ok || err != nil {
		t.Fatalf("TryLease of another lease: %v, %v", ok, err)
	}
	other.Release()

	got := leaseLater(t, b, "api")
	waitForWaiter(t, url)
	select {
	case <-got:
		t.Fatal("a second holder while the first holds the lease")
	default:
	}
	held.Release()
	held.Release() // idempotent
	l := <-got
	if l == nil {
		t.FailNow()
	}
	if _, ok, _ := a.TryLease(bg(t), LeaseName("api")); ok {
		t.Fatal("the first replica took the lease the second holds")
	}
	l.Release()
	if l, ok, err := a.TryLease(bg(t), LeaseName("api")); !ok || err != nil {
		t.Fatalf("TryLease after both released: %v, %v", ok, err)
	} else {
		l.Release()
	}
}

// waitForWaiter waits until a session waits for an advisory lock.
func waitForWaiter(t *testing.T, url string) {
	t.Helper()
	conn, err := pgx.Connect(bg(t), url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	deadline := time.Now().Add(20 * time.Second) // failure guard
	for time.Now().Before(deadline) {
		var n int
		if err := conn.QueryRow(bg(t), `SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond) // polling the server's lock table
	}
	t.Fatal("nobody waits for the lease")
}

// TestDeadHoldersLeaseIsTakenOver: when the holder's connection dies (as
// when its process is killed), a waiting replica gets the lease at once,
// and the holder learns that it lost it.
func TestDeadHoldersLeaseIsTakenOver(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	a, b := join(t, url, "a"), join(t, url, "b")
	held, err := a.Lease(bg(t), LeaseName("api"))
	if err != nil {
		t.Fatal(err)
	}
	got := leaseLater(t, b, "api")
	waitForWaiter(t, url)
	superuser(t, url, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'stackd a lease'`)
	l := <-got
	if l == nil {
		t.FailNow()
	}
	defer l.Release()
	select {
	case <-held.Lost():
	case <-time.After(20 * time.Second): // failure guard
		t.Fatal("the dead holder was not told that it lost the lease")
	}
	held.Release() // harmless after the loss
	select {
	case <-l.Lost():
		t.Fatal("the new holder lost the lease")
	default:
	}
}

// TestGivenUpWaitNeverHolds: a Lease whose context ends while it waits
// returns the context's error, and never holds the lease afterwards.
func TestGivenUpWaitNeverHolds(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	a, b := join(t, url, "a"), join(t, url, "b")
	held, err := a.Lease(bg(t), LeaseName("api"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg(t))
	done := make(chan error)
	go func() {
		_, err := b.Lease(ctx, LeaseName("api"))
		done <- err
	}()
	waitForWaiter(t, url)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("a given-up wait: %v", err)
	}
	held.Release()
	l, ok, err := a.TryLease(bg(t), LeaseName("api"))
	if !ok || err != nil {
		t.Fatalf("the given-up waiter holds the lease: %v, %v", ok, err)
	}
	l.Release()
}

// TestLeaseWithoutDatabase: an unreachable database is ErrUnavailable.
func TestLeaseWithoutDatabase(t *testing.T) {
	c := pgtest.Start(t)
	url := c.NewDatabase(t)
	a := join(t, url, "a")
	c.Stop(t)
	if _, err := a.Lease(bg(t), LeaseName("api")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Lease with the database down: %v", err)
	}
	if _, _, err := a.TryLease(bg(t), LeaseName("api")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("TryLease with the database down: %v", err)
	}
}

// recorder is a Handler that records what it is told.
type recorder struct {
	msgs      chan Message
	connected chan bool
}

func newRecorder() *recorder {
	return &recorder{msgs: make(chan Message, 64), connected: make(chan bool, 8)}
}

func (r *recorder) Connected(first bool) { r.connected <- first }
func (r *recorder) Message(m Message)    { r.msgs <- m }

func (r *recorder) next(t *testing.T) Message {
	t.Helper()
	select {
	case m := <-r.msgs:
		return m
	case <-time.After(20 * time.Second): // failure guard
		t.Fatal("no message")
		return Message{}
	}
}

func listen(t *testing.T, c *Cluster) *recorder {
	t.Helper()
	r := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Listen(ctx, r); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case first := <-r.connected:
		if !first {
			t.Fatal("the first connection is not first")
		}
	case <-time.After(20 * time.Second): // failure guard
		t.Fatal("never listening")
	}
	return r
}

// TestNotifications: a replica's messages reach the others in order,
// never itself; data too large for a notification is left out; after
// the listening connection broke, the listener reconnects, says so
// (Connected(false)) and receives again.
func TestNotifications(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	a, b := join(t, url, "a"), join(t, url, "b")
	ra, rb := listen(t, a), listen(t, b)

	a.Notify(Message{Kind: KindView, Repo: "api", Version: 7})
	a.Notify(Message{Kind: KindEvent, Repo: "api", Event: "sync_finished", Sync: "s1", Data: []byte(`{"id":"s1"}`)})
	big := make([]byte, 0, 10000)
	big = append(big, '"')
	for len(big) < 9000 {
		big = append(big, 'x')
	}
	big = append(big, '"')
	a.Notify(Message{Kind: KindEvent, Repo: "api", Event: "sync_finished", Sync: "s2", Data: big})
	if m := rb.next(t); m.Kind != KindView || m.Repo != "api" || m.Version != 7 || m.Replica != "a" || m.From != a.Instance() {
		t.Fatalf("first message: %+v", m)
	}
	if m := rb.next(t); m.Sync != "s1" || string(m.Data) != `{"id":"s1"}` {
		t.Fatalf("second message: %+v", m)
	}
	if m := rb.next(t); m.Sync != "s2" || m.Data != nil {
		t.Fatalf("a message too large for a notice keeps its data: %+v", m)
	}
	b.Notify(Message{Kind: KindAdded, Repo: "web"})
	if m := ra.next(t); m.Kind != KindAdded || m.Repo != "web" {
		t.Fatalf("a's message: %+v", m)
	}
	select {
	case m := <-ra.msgs:
		t.Fatalf("a received its own message: %+v", m)
	default:
	}

	superuser(t, url, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'stackd b listen'`)
	select {
	case first := <-rb.connected:
		if first {
			t.Fatal("a reconnection is reported as the first connection")
		}
	case <-time.After(20 * time.Second): // failure guard
		t.Fatal("the listener did not reconnect")
	}
	a.Notify(Message{Kind: KindRemoved, Repo: "api"})
	if m := rb.next(t); m.Kind != KindRemoved {
		t.Fatalf("after the reconnection: %+v", m)
	}
}

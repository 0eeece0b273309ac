package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The event fan-out figures: k concurrent event streams over fanoutRepos
// repositories, each stream from its own loopback address (a client of
// its own, as k people with the dashboard open), against a plain Go SSE
// fan-out (this program's serve-sse mode: a channel per client) serving
// the same events to the same clients in the same run.

// sseStream is one open event stream of the harness.
type sseStream struct {
	conn  net.Conn
	topic int
	got   atomic.Int64 // unix nanoseconds of the first view_updated, 0 before
	data  []byte       // that event's data (stream 0 keeps it)
	done  chan struct{}
}

// streamAddr is the loopback source address of stream i: every stream is
// a client of its own (127.0.0.0/8 is all loopback on Linux).
func streamAddr(i int) net.IP {
	return net.IPv4(127, byte(1+i/62500), byte(1+(i/250)%250), byte(1+i%250))
}

// openStream opens GET path on addr from local and waits for the stream's
// first event ("connected"). A refused stream returns its status.
func openStream(ctx context.Context, addr, path string, local net.IP, topic int, keep bool, onEvent func()) (*sseStream, int, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: local}, Timeout: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second)) // the handshake's failure guard
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", path, addr); err != nil {
		conn.Close()
		return nil, 0, err
	}
	br := bufio.NewReaderSize(conn, 2048)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, resp.StatusCode, nil
	}
	body := bufio.NewReaderSize(resp.Body, 1024)
	s := &sseStream{conn: conn, topic: topic, done: make(chan struct{})}
	typ, _, err := readEvent(body)
	if err != nil || typ != "connected" {
		conn.Close()
		if err == nil {
			err = fmt.Errorf("first event %q, want connected", typ)
		}
		return nil, 0, err
	}
	_ = conn.SetDeadline(time.Time{})
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		for {
			typ, data, err := readEvent(body)
			if err != nil {
				return
			}
			if typ == "view_updated" && s.got.Load() == 0 {
				if keep {
					s.data = data
				}
				s.got.Store(time.Now().UnixNano())
				onEvent()
			}
		}
	}()
	return s, http.StatusOK, nil
}

// readEvent reads one server-sent event (comments skipped).
func readEvent(r *bufio.Reader) (string, []byte, error) {
	var typ string
	var data []byte
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if typ != "" || data != nil {
				return typ, data, nil
			}
		case strings.HasPrefix(line, "event:"):
			typ = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")...)
		}
	}
}

// fanoutSide is one side's measurements of the fan-out.
type fanoutSide struct {
	accepted, refused int
	perStream         float64 // bytes of Go heap and stacks in use (after a GC) per idle stream
	rssPerStream      float64 // bytes of RSS per idle stream
	p99               time.Duration
	missed            int // streams that never saw the event
	firstErr          error
	data              []byte // a view_updated's data (stackd's side)
}

// openAll opens k streams, topic i%topics, path(topic), 64 handshakes at a
// time; onEvent is called on each stream's first view_updated.
func openAll(ctx context.Context, addr string, k, topics int, path func(int) string, onEvent func()) ([]*sseStream, fanoutSide) {
	streams := make([]*sseStream, k)
	var refused atomic.Int64
	var mu sync.Mutex
	var side fanoutSide
	_ = forEach(ctx, k, 64, func(ctx context.Context, i int) error {
		s, status, err := openStream(ctx, addr, path(i%topics), streamAddr(i), i%topics, i == 0, onEvent)
		switch {
		case err != nil:
			mu.Lock()
			if side.firstErr == nil {
				side.firstErr = err
			}
			mu.Unlock()
			refused.Add(1)
		case status != http.StatusOK:
			refused.Add(1)
		default:
			streams[i] = s
		}
		return nil
	})
	side.refused = int(refused.Load())
	side.accepted = k - side.refused
	return slices.DeleteFunc(streams, func(s *sseStream) bool { return s == nil }), side
}

// deliver publishes one event per topic (publish returns when the
// publisher's request was answered) and waits until every stream has seen
// its topic's event; it returns the p99 of receipt after answer.
func deliver(ctx context.Context, streams []*sseStream, topics int, seen <-chan struct{}, publish func(context.Context, int) error, side *fanoutSide) error {
	answered := make([]atomic.Int64, topics)
	err := forEach(ctx, topics, fleetParallel, func(ctx context.Context, t int) error {
		if err := publish(ctx, t); err != nil {
			return err
		}
		answered[t].Store(time.Now().UnixNano())
		return nil
	})
	if err != nil {
		return err
	}
	guard := time.NewTimer(30 * time.Second) // failure guard: the others are counted as missed
	defer guard.Stop()
	select {
	case <-seen:
	case <-guard.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	var lat []time.Duration
	for _, s := range streams {
		g := s.got.Load()
		if g == 0 {
			side.missed++
			continue
		}
		lat = append(lat, max(0, time.Duration(g-answered[s.topic].Load())))
	}
	slices.Sort(lat)
	side.p99 = percentile(lat, 99)
	if len(streams) > 0 {
		side.data = streams[0].data
	}
	return nil
}

// closeAll closes every stream and waits for their readers.
func closeAll(streams []*sseStream) {
	for _, s := range streams {
		s.conn.Close()
	}
	for _, s := range streams {
		<-s.done
	}
}

// seenCounter closes its channel once want streams have seen the event.
type seenCounter struct {
	n    atomic.Int64
	want atomic.Int64
	once sync.Once
	c    chan struct{}
}

func newSeen() *seenCounter { return &seenCounter{c: make(chan struct{})} }

func (s *seenCounter) hit() {
	if w := s.want.Load(); s.n.Add(1) >= w && w > 0 {
		s.once.Do(func() { close(s.c) })
	}
}

func (s *seenCounter) expect(want int) {
	s.want.Store(int64(want))
	if want == 0 || s.n.Load() >= int64(want) {
		s.once.Do(func() { close(s.c) })
	}
}

// fanout measures k streams over the first fanoutRepos repositories of the
// fleet server sd, then the plain SSE fan-out with the same clients.
func (b *bench) fanout(ctx context.Context, sd *stackd, api *apiClient, metrics string, fr *fleetRun, n, k int) error {
	topics := min(fanoutRepos, n)
	limit := procNoFile(sd.cmd.Process.Pid)
	b.logf("== fan-out: %s streams over %d repositories (server's RLIMIT_NOFILE: %s)", fmtCount(k), topics, limit)
	if note := "the server's RLIMIT_NOFILE during the fan-out: " + limit; !slices.Contains(b.fleetNotes, note) {
		b.fleetNotes = append(b.fleetNotes, note)
	}
	pid := sd.cmd.Process.Pid
	goroutines := func() float64 {
		text, err := scrape(ctx, metrics)
		if err != nil {
			return math.NaN()
		}
		return metricSum(text, "go_goroutines")
	}
	// A first round of pushes and syncs before the "before" readings:
	// what a sync leaves open (pack files of the new objects) is not
	// counted as left behind by the streams. The API client's idle
	// connections are closed before each reading.
	warm := forEach(ctx, topics, fleetParallel, func(ctx context.Context, t int) error {
		return b.pushAndSync(ctx, api, fr, t)
	})
	if warm != nil {
		return fmt.Errorf("fan-out warm-up: %w", warm)
	}
	api.close()
	rss0, err := procRSS(pid)
	if err != nil {
		return err
	}
	mem0, memErr := goMemInUse(ctx, metrics)
	fds0, err := procFDs(pid)
	if err != nil {
		return err
	}
	gr0 := goroutines()

	seen := newSeen()
	streams, side := openAll(ctx, sd.addr, k, topics, func(t int) string { return "/api/v1/repos/" + fleetID(t) + "/events" }, seen.hit)
	seen.expect(len(streams))
	if rss1, err := procRSS(pid); err == nil && side.accepted > 0 {
		side.rssPerStream = (rss1 - rss0) / float64(side.accepted)
	}
	if memErr == nil {
		var mem1 float64
		if mem1, memErr = goMemInUse(ctx, metrics); memErr == nil && side.accepted > 0 {
			side.perStream = (mem1 - mem0) / float64(side.accepted)
		}
	}
	b.logf("fan-out stackd: %d streams accepted, %d refused (first error: %v); Go heap+stacks +%s, RSS +%s per stream",
		side.accepted, side.refused, side.firstErr, fmtValue(unitBytes, side.perStream), fmtValue(unitBytes, side.rssPerStream))
	err = deliver(ctx, streams, topics, seen.c, func(ctx context.Context, t int) error {
		return b.pushAndSync(ctx, api, fr, t)
	}, &side)
	api.close()
	// What the server holds besides the streams after the syncs (those
	// open now less one per stream), for the note: the figure counts
	// against fds0, read before the streams and the syncs (a mirror
	// closes the pack files a run opened when the run ends).
	besides := -1
	if fdsOpen, ferr := procFDs(pid); ferr == nil {
		besides = fdsOpen - len(streams)
	}
	closeAll(streams)
	if err != nil && ctx.Err() != nil {
		return err
	}
	refused, dl, mem := b.res.at("frefused", k), b.res.at("fdeliver", k), b.res.at("fstreammem", k)
	refused.stackd.add(float64(side.refused))
	if side.firstErr != nil {
		refused.stackd.extra = failText(side.firstErr)
	}
	switch {
	case err != nil:
		dl.stackd.fail(err)
		b.res.fact("fan-out reached every stream", k, false, err.Error())
	case side.accepted == 0:
		dl.stackd.fail(errors.New("no stream accepted"))
	default:
		dl.stackd.add(side.p99.Seconds())
		if side.missed > 0 {
			dl.stackd.extra = fmt.Sprintf("%d of %d streams missed it", side.missed, side.accepted)
		}
		b.res.fact("fan-out reached every stream", k, side.missed == 0, fmt.Sprintf("%d of %d streams missed the view_updated", side.missed, side.accepted))
	}
	switch {
	case memErr != nil:
		mem.stackd.fail(memErr)
	case side.accepted > 0:
		mem.stackd.add(side.perStream)
		mem.stackd.extra = "RSS " + fmtValue(unitBytes, side.rssPerStream)
	}
	b.logf("fan-out stackd: p99 %s after the sync's answer, %d missed", fmtDuration(side.p99), side.missed)

	// What the server holds once the clients have gone: polled until it
	// is back to where it was, or 10 s have passed.
	left, fdLeft := b.res.at("fleftgr", k), b.res.at("fleftfd", k)
	var grN float64
	var fdN int
	settle := time.Now().Add(10 * time.Second)
	for {
		grN = goroutines()
		fdN, err = procFDs(pid)
		if err != nil {
			return err
		}
		if (grN <= gr0 && fdN <= fds0) || time.Now().After(settle) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling the server's state
	}
	if math.IsNaN(gr0) || math.IsNaN(grN) {
		left.stackd.na = "no go_goroutines metric"
	} else {
		left.stackd.add(max(0, grN-gr0))
		left.stackd.extra = fmt.Sprintf("%.0f before, %.0f after", gr0, grN)
	}
	fdLeft.stackd.add(float64(max(0, fdN-fds0)))
	fdLeft.stackd.extra = fmt.Sprintf("%d before the streams, %d besides them after the syncs, %d after", fds0, besides, fdN)
	b.logf("fan-out stackd: goroutines %.0f -> %.0f, fds %d -> %d after the clients left", gr0, grN, fds0, fdN)

	// The plain Go SSE fan-out: the same clients, the same event.
	payload := side.data
	if payload == nil {
		payload = []byte(`{"repo":"r0000"}`)
	}
	base, err := b.plainFanout(ctx, k, topics, payload)
	if err != nil {
		dl.base.fail(err)
		mem.base.fail(err)
		b.logf("fan-out plain: %v", err)
		return ctx.Err()
	}
	if base.accepted > 0 {
		mem.base.add(base.perStream)
		mem.base.extra = "RSS " + fmtValue(unitBytes, base.rssPerStream)
		dl.base.add(base.p99.Seconds())
	}
	b.logf("fan-out plain: %d accepted; Go heap+stacks +%s, RSS +%s per stream; p99 %s; %d missed",
		base.accepted, fmtValue(unitBytes, base.perStream), fmtValue(unitBytes, base.rssPerStream), fmtDuration(base.p99), base.missed)
	return ctx.Err()
}

// pushAndSync pushes a commit to main of fleet repository t and syncs it.
func (b *bench) pushAndSync(ctx context.Context, api *apiClient, fr *fleetRun, t int) error {
	_, publish, err := fr.tips.push(fr.gitDir(t), t, "refs/heads/main")
	if err == nil {
		err = publish()
	}
	if err != nil {
		return err
	}
	octx, cancel := b.opCtx(ctx)
	defer cancel()
	sr, err := api.sync(octx, fleetID(t))
	if err == nil && len(sr.UpdatedRefs) != 1 {
		err = fmt.Errorf("%s: sync reported %s, want main", fleetID(t), refList(sr.UpdatedRefs))
	}
	return err
}

// plainFanout runs the serve-sse child and measures it as fanout does.
func (b *bench) plainFanout(ctx context.Context, k, topics int, payload []byte) (fanoutSide, error) {
	c, base, err := b.startHelper(ctx, "serve-sse", serveSSEReady)
	if err != nil {
		return fanoutSide{}, err
	}
	defer c.kill()
	addr := strings.TrimPrefix(base, "http://")
	pid := c.cmd.Process.Pid
	rss0, err := procRSS(pid)
	if err != nil {
		return fanoutSide{}, err
	}
	mem0, err := goMemInUse(ctx, base)
	if err != nil {
		return fanoutSide{}, err
	}
	seen := newSeen()
	streams, side := openAll(ctx, addr, k, topics, func(t int) string { return fmt.Sprintf("/events/%d", t) }, seen.hit)
	seen.expect(len(streams))
	defer closeAll(streams)
	if rss1, err := procRSS(pid); err == nil && side.accepted > 0 {
		side.rssPerStream = (rss1 - rss0) / float64(side.accepted)
	}
	mem1, err := goMemInUse(ctx, base)
	if err != nil {
		return fanoutSide{}, err
	}
	if side.accepted > 0 {
		side.perStream = (mem1 - mem0) / float64(side.accepted)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: fleetParallel}}
	defer hc.CloseIdleConnections()
	err = deliver(ctx, streams, topics, seen.c, func(ctx context.Context, t int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/publish/%d", base, t), strings.NewReader(string(payload)))
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("publish: status %d", resp.StatusCode)
		}
		return nil
	}, &side)
	return side, err
}

// startHelper starts this program's mode (serve-bytes, serve-sse) that
// prints ready+address on stderr once it listens.
func (b *bench) startHelper(ctx context.Context, mode, ready string, args ...string) (*child, string, error) {
	all := append(append(append([]string{}, b.self[1:]...), mode, "-addr", "127.0.0.1:0"), args...)
	cmd := exec.Command(b.self[0], all...)
	cmd.Env = b.git.env
	addrc := make(chan string, 1)
	var once sync.Once
	c, err := b.procs.start(mode, cmd, func(line string) {
		if addr, ok := strings.CutPrefix(line, ready); ok {
			once.Do(func() { addrc <- strings.TrimSpace(addr) })
		}
	})
	if err != nil {
		return nil, "", err
	}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case addr := <-addrc:
		return c, "http://" + addr, nil
	case <-c.done:
		return nil, "", fmt.Errorf("%s exited: %s", mode, c.logTail())
	case <-t.C: // failure guard
		c.kill()
		return nil, "", fmt.Errorf("%s did not start: %w", mode, errTimeout)
	case <-ctx.Done():
		c.kill()
		return nil, "", ctx.Err()
	}
}

const serveSSEReady = "serve-sse listening on "

// serveSSE is the hidden mode `stackd-bench serve-sse -addr A`: a plain
// net/http server-sent-events fan-out, the baseline of the fan-out
// figures. GET /events/{topic} subscribes (a channel per client, the
// "connected" event first); POST /publish/{topic} sends its body as a
// view_updated event to every subscriber of the topic (a full channel
// drops it, as a slow client would) and answers 204.
func serveSSE(args []string) error {
	fs := flag.NewFlagSet("serve-sse", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var mu sync.Mutex
	subs := map[string]map[chan []byte]bool{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events/{topic}", func(w http.ResponseWriter, r *http.Request) {
		fl, ok := w.(http.Flusher)
		if !ok {
			http.Error(w, "no flusher", http.StatusInternalServerError)
			return
		}
		topic := r.PathValue("topic")
		ch := make(chan []byte, 8)
		mu.Lock()
		if subs[topic] == nil {
			subs[topic] = map[chan []byte]bool{}
		}
		subs[topic][ch] = true
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(subs[topic], ch)
			mu.Unlock()
		}()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = io.WriteString(w, "event: connected\ndata: {}\n\n")
		fl.Flush()
		for {
			select {
			case data := <-ch:
				if _, err := fmt.Fprintf(w, "event: view_updated\ndata: %s\n\n", data); err != nil {
					return
				}
				fl.Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	// The same readings as stackd's metrics listener gives: a heap
	// profile with gc=1 collects, /metrics has the Go memory in use.
	mux.HandleFunc("GET /debug/pprof/heap", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(w, "go_memstats_heap_inuse_bytes %d\ngo_memstats_stack_inuse_bytes %d\n", ms.HeapInuse, ms.StackInuse)
	})
	mux.HandleFunc("POST /publish/{topic}", func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		for ch := range subs[r.PathValue("topic")] {
			select {
			case ch <- data:
			default:
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("serve-sse: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Fprintln(os.Stderr, serveSSEReady+ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve-sse: %w", err)
	}
	return nil
}

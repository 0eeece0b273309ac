package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// loadResult is what one load run measured.
type loadResult struct {
	requests, failures int
	elapsed            time.Duration
	p50, p99           time.Duration
	firstFailure       string
}

func (r loadResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r loadResult) extra() string {
	return "p50 " + fmtDuration(r.p50) + ", p99 " + fmtDuration(r.p99)
}

// loadSpec is one GET load: clients goroutines, each with keep-alive
// connections, fetching url for duration. Every answer must be 200 with
// wantBytes bytes of body and, when gzip is set, Content-Encoding gzip.
type loadSpec struct {
	url       string
	gzip      bool
	clients   int
	duration  time.Duration
	wantBytes int
	timeout   time.Duration // of one request
}

// runLoad drives the same load against any server: stackd and the plain
// byte server are measured by this one function. A short warm-up (not
// recorded) opens the connections first.
func runLoad(ctx context.Context, s loadSpec) (loadResult, error) {
	tr := &http.Transport{
		MaxIdleConns:        s.clients * 2,
		MaxIdleConnsPerHost: s.clients * 2,
		DisableCompression:  true, // the client never decodes; gzip is asked explicitly
		IdleConnTimeout:     time.Minute,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: s.timeout}
	warm := min(s.duration/10, 500*time.Millisecond)
	if _, err := drive(ctx, hc, s, warm); err != nil {
		return loadResult{}, err
	}
	return drive(ctx, hc, s, s.duration)
}

func drive(ctx context.Context, hc *http.Client, s loadSpec, d time.Duration) (loadResult, error) {
	type worker struct {
		lat      []time.Duration
		failures int
		first    string
	}
	ws := make([]worker, s.clients)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i := range ws {
		w := &ws[i]
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				err := fetchOnce(ctx, hc, s)
				if err != nil {
					w.failures++
					if w.first == "" {
						w.first = err.Error()
					}
					continue
				}
				w.lat = append(w.lat, time.Since(t0))
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return loadResult{}, err
	}
	res := loadResult{elapsed: time.Since(start)}
	var all []time.Duration
	for _, w := range ws {
		all = append(all, w.lat...)
		res.failures += w.failures
		if res.firstFailure == "" {
			res.firstFailure = w.first
		}
	}
	res.requests = len(all)
	slices.Sort(all)
	res.p50, res.p99 = percentile(all, 50), percentile(all, 99)
	if res.requests == 0 {
		return res, fmt.Errorf("no successful request (%d failed; first: %s)", res.failures, res.firstFailure)
	}
	return res, nil
}

func fetchOnce(ctx context.Context, hc *http.Client, s loadSpec) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return err
	}
	if s.gzip {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return err
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %d", resp.StatusCode)
	case int(n) != s.wantBytes:
		return fmt.Errorf("%d bytes, want %d", n, s.wantBytes)
	case s.gzip && resp.Header.Get("Content-Encoding") != "gzip":
		return errors.New("answer not gzip-encoded")
	}
	return nil
}

// serveBytesReady prefixes the line serve-bytes prints (on stderr) with its
// address once it listens.
const serveBytesReady = "serve-bytes listening on "

// serveBytes is the hidden mode `stackd-bench serve-bytes -file F
// [-gzip-file G] -addr A`: a plain net/http server that answers every GET
// with the bytes of F (or of G, Content-Encoding gzip, when the client
// accepts gzip). It is the baseline of the GET throughput figure and runs
// as its own process, like stackd.
func serveBytes(args []string) error {
	fs := flag.NewFlagSet("serve-bytes", flag.ContinueOnError)
	file := fs.String("file", "", "body to serve")
	gzFile := fs.String("gzip-file", "", "gzip-encoded body to serve to clients that accept gzip")
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	body, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("serve-bytes: %w", err)
	}
	var gz []byte
	if *gzFile != "" {
		if gz, err = os.ReadFile(*gzFile); err != nil {
			return fmt.Errorf("serve-bytes: %w", err)
		}
	}
	bodyLen, gzLen := strconv.Itoa(len(body)), strconv.Itoa(len(gz))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Type", "application/json")
		if gz != nil && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			hd.Set("Content-Encoding", "gzip")
			hd.Set("Content-Length", gzLen)
			_, _ = w.Write(gz)
			return
		}
		hd.Set("Content-Length", bodyLen)
		_, _ = w.Write(body)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("serve-bytes: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Fprintln(os.Stderr, serveBytesReady+ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve-bytes: %w", err)
	}
	return nil
}

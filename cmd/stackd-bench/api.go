package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/stackd/stackd/gen/client"
)

// errTimeout marks a measurement that ran past its deadline (a 504 from
// the server, or the harness's own deadline).
var errTimeout = errors.New("timeout")

// apiClient talks to one server through the generated client.
type apiClient struct {
	base string
	hc   *http.Client
	c    *client.ClientWithResponses
}

func newAPI(base string) (*apiClient, error) {
	// No transport-level gzip: what is measured is what the server sends.
	hc := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4}}
	c, err := client.NewClientWithResponses(base, client.WithHTTPClient(hc))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return &apiClient{base: base, hc: hc, c: c}, nil
}

func (a *apiClient) close() { a.hc.CloseIdleConnections() }

// statusErr turns an unexpected answer into an error; 504 is a timeout.
func statusErr(op string, status int, body []byte) error {
	detail := strings.TrimSpace(string(body))
	var p client.Problem
	if json.Unmarshal(body, &p) == nil && p.Detail != nil {
		detail = *p.Detail
	}
	if len(detail) > 200 {
		detail = detail[:200] + "..."
	}
	if status == http.StatusGatewayTimeout {
		return fmt.Errorf("%s: %d %s: %w", op, status, detail, errTimeout)
	}
	return fmt.Errorf("%s: %d %s", op, status, detail)
}

// onboard adds the mirror url as id; the server answers 201 after the
// first view is built.
func (a *apiClient) onboard(ctx context.Context, url, id string) (*client.Repo, error) {
	resp, err := a.c.CreateRepoWithResponse(ctx, client.RepoCreate{Url: url, Id: &id})
	if err != nil {
		return nil, fmt.Errorf("onboard: %w", err)
	}
	if resp.StatusCode() != http.StatusCreated || resp.JSON201 == nil {
		return nil, statusErr("onboard", resp.StatusCode(), resp.Body)
	}
	return resp.JSON201, nil
}

// sync refreshes repository id and waits for the result.
func (a *apiClient) sync(ctx context.Context, id string) (*client.SyncResult, error) {
	resp, err := a.c.SyncRepoWithResponse(ctx, id, nil)
	if err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	if resp.StatusCode() != http.StatusOK || resp.JSON200 == nil {
		return nil, statusErr("sync", resp.StatusCode(), resp.Body)
	}
	return resp.JSON200, nil
}

// branchSha is the tip of branch name in repository id's current view.
func (a *apiClient) branchSha(ctx context.Context, id, name string) (string, error) {
	resp, err := a.c.GetBranchWithResponse(ctx, id, name, nil)
	if err != nil {
		return "", fmt.Errorf("branch %s: %w", name, err)
	}
	if resp.StatusCode() != http.StatusOK || resp.JSON200 == nil {
		return "", statusErr("branch "+name, resp.StatusCode(), resp.Body)
	}
	return resp.JSON200.Sha, nil
}

// rawGet fetches path with the given Accept-Encoding ("" for identity)
// and returns status, Content-Encoding and body.
func (a *apiClient) rawGet(ctx context.Context, path, acceptEncoding string) (int, string, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return 0, "", nil, err
	}
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, "", nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", nil, fmt.Errorf("GET %s: %w", path, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Encoding"), body, nil
}

// viewBranches counts the branches of a view: those of its stacks plus
// trunk.
func viewBranches(body []byte) (int, error) {
	var v struct {
		Stacks []struct {
			Branches []struct {
				Name string `json:"name"`
			} `json:"branches"`
		} `json:"stacks"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return 0, fmt.Errorf("view: %w", err)
	}
	n := 1
	for _, s := range v.Stacks {
		n += len(s.Branches)
	}
	return n, nil
}

// sseEvent is one server-sent event.
type sseEvent struct {
	typ  string
	data []byte
}

// syncResult decodes a sync_finished or sync_failed event.
func (e sseEvent) syncResult() (client.SyncResult, error) {
	var r client.SyncResult
	err := json.Unmarshal(e.data, &r)
	return r, err
}

// events is a subscription to a repository's event stream.
type events struct {
	c      chan sseEvent
	cancel context.CancelFunc
	err    error // set before c is closed
}

// subscribe opens repository id's event stream and returns once the
// server's "connected" event arrived, that is once the subscription is
// registered: every event published after that is seen. The stream lives
// as long as ctx; handshake bounds the wait for the connected event.
func (a *apiClient) subscribe(ctx context.Context, id string, handshake time.Duration) (*events, error) {
	sctx, cancel := context.WithCancel(ctx)
	guard := time.AfterFunc(handshake, cancel)
	defer guard.Stop()
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, a.base+"/api/v1/repos/"+id+"/events", nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := a.hc.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("events: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, statusErr("events", resp.StatusCode, body)
	}
	ev := &events{c: make(chan sseEvent, 256), cancel: cancel}
	go ev.read(resp.Body)
	first, err := ev.next(sctx)
	if err != nil {
		ev.close()
		if ctx.Err() == nil {
			err = fmt.Errorf("events: no connected event within %s: %w", handshake, errTimeout)
		}
		return nil, err
	}
	if !guard.Stop() {
		ev.close()
		return nil, fmt.Errorf("events: no connected event within %s: %w", handshake, errTimeout)
	}
	if first.typ != "connected" {
		ev.close()
		return nil, fmt.Errorf("events: first event %q, want connected", first.typ)
	}
	return ev, nil
}

func (ev *events) read(body io.ReadCloser) {
	defer close(ev.c)
	defer body.Close()
	r := bufio.NewReaderSize(body, 64<<10)
	var cur sseEvent
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			ev.err = fmt.Errorf("events: stream ended: %w", err)
			return
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if cur.typ != "" || cur.data != nil {
				ev.c <- cur
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, ":"): // comment (keepalive)
		case strings.HasPrefix(line, "event:"):
			cur.typ = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			d := strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
			if cur.data != nil {
				cur.data = append(cur.data, '\n')
			}
			cur.data = append(cur.data, d...)
		}
	}
}

// next returns the next event.
func (ev *events) next(ctx context.Context) (sseEvent, error) {
	select {
	case e, ok := <-ev.c:
		if !ok {
			return sseEvent{}, ev.err
		}
		return e, nil
	case <-ctx.Done():
		return sseEvent{}, context.Cause(ctx)
	}
}

// waitFor returns the first event (from now on) that match accepts.
func (ev *events) waitFor(ctx context.Context, match func(sseEvent) bool) (sseEvent, error) {
	for {
		e, err := ev.next(ctx)
		if err != nil {
			return sseEvent{}, err
		}
		if match(e) {
			return e, nil
		}
	}
}

// discardBuffered drops the events that have arrived and not been read.
func (ev *events) discardBuffered() {
	for {
		select {
		case _, ok := <-ev.c:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

func (ev *events) close() {
	ev.cancel()
	for range ev.c { // drain until the reader has stopped
	}
}

// isType matches events of the given types.
func isType(types ...string) func(sseEvent) bool {
	return func(e sseEvent) bool {
		for _, t := range types {
			if e.typ == t {
				return true
			}
		}
		return false
	}
}

// compactJSON shortens a body for an error message.
func compactJSON(b []byte) string {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		out.Reset()
		out.Write(b)
	}
	s := out.String()
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

package impl

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl/view"
)

// The view handlers never encode: every body is bytes the snapshot made
// when it was built (and shares with the snapshots after it while
// unchanged), written with their ETag. GET .../view also has a gzip form,
// sent to clients that accept it.

// acceptsGzip reads Accept-Encoding: gzip (or *) with a non-zero q.
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "*" {
				continue
			}
			q := 1.0
			for p := range strings.SplitSeq(params, ";") {
				if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
					if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
						q = f
					}
				}
			}
			if q > 0 {
				return true
			}
		}
	}
	return false
}

// jsonBytes is a 200 answer with a JSON body serialized in advance.
type jsonBytes struct {
	body []byte // without the final newline
	gzip []byte // body and newline, gzip-compressed; nil when there is none
	etag string
	// sendGzip: the client accepts gzip and there is a gzip form.
	sendGzip bool
}

var newline = []byte{'\n'}

func (j jsonBytes) write(w http.ResponseWriter) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("ETag", j.etag)
	if j.gzip != nil {
		h.Add("Vary", "Accept-Encoding")
	}
	if j.sendGzip {
		h.Set("Content-Encoding", "gzip")
		h.Set("Content-Length", strconv.Itoa(len(j.gzip)))
		w.WriteHeader(http.StatusOK)
		_, err := w.Write(j.gzip)
		return err
	}
	h.Set("Content-Length", strconv.Itoa(len(j.body)+1))
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(j.body); err != nil {
		return err
	}
	_, err := w.Write(newline)
	return err
}

func viewAnswer(ctx context.Context, snap *view.Snapshot) jsonBytes {
	js := snap.ViewJSON()
	return jsonBytes{body: js[:len(js)-1], gzip: snap.ViewGzip(), etag: snap.ETag(), sendGzip: acceptsGzipFrom(ctx)}
}

type viewResponse struct{ jsonBytes }

func (r viewResponse) VisitGetViewResponse(w http.ResponseWriter) error { return r.write(w) }

type stacksResponse struct{ jsonBytes }

func (r stacksResponse) VisitListStacksResponse(w http.ResponseWriter) error { return r.write(w) }

type stackResponse struct{ jsonBytes }

func (r stackResponse) VisitGetStackResponse(w http.ResponseWriter) error { return r.write(w) }

type branchesResponse struct{ jsonBytes }

func (r branchesResponse) VisitListBranchesResponse(w http.ResponseWriter) error { return r.write(w) }

type branchResponse struct{ jsonBytes }

func (r branchResponse) VisitGetBranchResponse(w http.ResponseWriter) error { return r.write(w) }

var (
	_ gen.GetViewResponseObject      = viewResponse{}
	_ gen.ListStacksResponseObject   = stacksResponse{}
	_ gen.GetStackResponseObject     = stackResponse{}
	_ gen.ListBranchesResponseObject = branchesResponse{}
	_ gen.GetBranchResponseObject    = branchResponse{}
)

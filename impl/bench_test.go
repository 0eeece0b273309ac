package impl_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stackd/stackd/gen"
	"github.com/stackd/stackd/impl"
	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/gitrepo/gittest"
	"github.com/stackd/stackd/impl/view"
)

// BenchmarkGetBranch2000 measures a GET of one branch on a 2,000-branch
// repository, served from the snapshot, and reports it as a fraction of one
// view rebuild (what a GET would cost if it walked git), measured in the
// same process.
func BenchmarkGetBranch2000(b *testing.B) {
	r := gittest.New(b)
	var fi strings.Builder
	fi.WriteString("commit refs/heads/main\nmark :1\ncommitter C <c@example.com> 1700000000 +0000\ndata 4\nbase\n\n")
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&fi, "commit refs/heads/topic-%04d\nmark :%d\ncommitter C <c@example.com> %d +0000\ndata 5\nwork\nfrom :1\n\n", i, i+2, 1700000100+i)
	}
	r.FastImport(fi.String())
	r.Git("checkout", "-q", "main")

	wt, err := gitrepo.Discover(r.Dir)
	if err != nil {
		b.Fatal(err)
	}
	const rebuilds = 3
	start := time.Now()
	for range rebuilds {
		repo, err := wt.Read()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := view.Build(context.Background(), repo, view.Input{RepoID: "local", Kind: gen.Local}); err != nil {
			b.Fatal(err)
		}
	}
	rebuild := time.Since(start) / rebuilds

	cfg := baseConfigB(b, r.Dir)
	// The limiter is not what is measured here.
	app, err := impl.New(cfg, slogDiscard(), impl.Options{Rate: auth.RateLimit{PerSecond: -1}})
	if err != nil {
		b.Fatal(err)
	}
	defer app.Close()
	srv := httptest.NewServer(app.Handler())
	defer srv.Close()
	url := srv.URL + "/api/v1/repos/local/branches/topic-1234"
	b.ResetTimer()
	for b.Loop() {
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	perOp := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(perOp)/float64(rebuild), "x-rebuild")
}

// Command repofetch must not compile: a working repository's Repo cannot
// fetch.
package main

import (
	"context"

	"github.com/stackd/stackd/impl/gitrepo"
)

func main() {
	w, _ := gitrepo.Open(".")
	r, _ := w.Read()
	_ = r.Fetch(context.Background())
}

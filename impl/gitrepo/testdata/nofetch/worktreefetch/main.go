// Command worktreefetch must not compile: a Worktree cannot fetch.
package main

import (
	"context"

	"github.com/stackd/stackd/impl/gitrepo"
)

func main() {
	w, _ := gitrepo.Open(".")
	_ = w.Fetch(context.Background())
}

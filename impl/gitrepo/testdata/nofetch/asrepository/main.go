// Command asrepository must not compile: what the view is handed cannot be
// turned back into a go-git repository (which has Fetch).
package main

import (
	git "github.com/go-git/go-git/v5"

	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/view"
)

func main() {
	w, _ := gitrepo.Open(".")
	r, _ := w.Read()
	var v view.Repo = r
	repo := v.(*git.Repository)
	_ = repo.Fetch(&git.FetchOptions{})
}

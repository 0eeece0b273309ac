// Command asstorer must not compile: a working repository's Repo is not a
// go-git storer, so git.Open cannot make a fetching repository of it.
package main

import (
	git "github.com/go-git/go-git/v5"

	"github.com/stackd/stackd/impl/gitrepo"
)

func main() {
	w, _ := gitrepo.Open(".")
	r, _ := w.Read()
	repo, _ := git.Open(r, nil)
	_ = repo.Fetch(&git.FetchOptions{})
}

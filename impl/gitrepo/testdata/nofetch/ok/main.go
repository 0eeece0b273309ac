// Command ok is the control of TestFetchIntoWorkingRepositoryDoesNotCompile:
// reading the working repository compiles.
package main

import (
	"fmt"

	"github.com/stackd/stackd/impl/gitrepo"
	"github.com/stackd/stackd/impl/view"
)

func main() {
	w, _ := gitrepo.Open(".")
	r, _ := w.Read()
	var v view.Repo = r
	fmt.Println(v.Refs().Len())
}

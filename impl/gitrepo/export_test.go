package gitrepo

// StorerOf exposes the read-only storer to the package's tests.
var StorerOf = (*Worktree).newStorer

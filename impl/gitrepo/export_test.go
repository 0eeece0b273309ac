package gitrepo

// StorerOf exposes the read-only storer to the package's tests.
var StorerOf = (*Worktree).newStorer

// IsBare reports whether the repository has no work tree.
func (w *Worktree) IsBare() bool { return w.workDir == "" }

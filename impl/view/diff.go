package view

import (
	"context"
	"fmt"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// Diff returns the unified, git-style patch from base to tip. Blobs are
// read only here, so in a partial clone missing blobs fail the diff (with
// the object-not-found error wrapped) and nothing else.
func Diff(ctx context.Context, repo *git.Repository, base, tip plumbing.Hash) (string, error) {
	from, err := repo.CommitObject(base)
	if err != nil {
		return "", fmt.Errorf("view: diff base %s: %w", base, err)
	}
	to, err := repo.CommitObject(tip)
	if err != nil {
		return "", fmt.Errorf("view: diff tip %s: %w", tip, err)
	}
	fromTree, err := from.Tree()
	if err != nil {
		return "", fmt.Errorf("view: diff base tree: %w", err)
	}
	toTree, err := to.Tree()
	if err != nil {
		return "", fmt.Errorf("view: diff tip tree: %w", err)
	}
	patch, err := fromTree.PatchContext(ctx, toTree)
	if err != nil {
		return "", fmt.Errorf("view: diff %s..%s: %w", base, tip, err)
	}
	return patch.String(), nil
}

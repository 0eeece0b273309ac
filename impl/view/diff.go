package view

import (
	"context"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Diff returns the unified, git-style patch from base to tip. Blobs are
// read only here, so in a partial clone missing blobs fail the diff (with
// the object-not-found error wrapped) and nothing else.
func Diff(ctx context.Context, repo Repo, base, tip plumbing.Hash) (string, error) {
	s := objectsOnly{repo}
	from, err := object.GetCommit(s, base)
	if err != nil {
		return "", fmt.Errorf("view: diff base %s: %w", base, err)
	}
	to, err := object.GetCommit(s, tip)
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

// objectsOnly adapts a Repo to the object reader go-git's object package
// expects. It can only read: the write methods go-git's interface demands
// fail, and the Repo underneath has none.
type objectsOnly struct{ r Repo }

var _ storer.EncodedObjectStorer = objectsOnly{}

var errReadOnly = fmt.Errorf("view: objects are read-only")

func (o objectsOnly) NewEncodedObject() plumbing.EncodedObject { return &plumbing.MemoryObject{} }
func (o objectsOnly) SetEncodedObject(plumbing.EncodedObject) (plumbing.Hash, error) {
	return plumbing.ZeroHash, errReadOnly
}
func (o objectsOnly) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	return o.r.Object(t, h)
}
func (o objectsOnly) IterEncodedObjects(plumbing.ObjectType) (storer.EncodedObjectIter, error) {
	return nil, errReadOnly
}
func (o objectsOnly) HasEncodedObject(h plumbing.Hash) error {
	_, err := o.r.Object(plumbing.AnyObject, h)
	return err
}
func (o objectsOnly) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	if s, ok := o.r.(Sizer); ok {
		return s.ObjectSize(h)
	}
	obj, err := o.r.Object(plumbing.AnyObject, h)
	if err != nil {
		return 0, err
	}
	return obj.Size(), nil
}
func (o objectsOnly) AddAlternate(string) error { return errReadOnly }

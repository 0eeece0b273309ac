package main

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stackd/stackd/impl/gitrepo/gittest"
)

// The fleet's upstreams: one template repository (gittest.BuildStacks,
// cached like every fixture), and per fleet repository a copy of it whose
// files are hard links to the template's (git never changes an object,
// pack or packed-refs file in place: it writes a new file and renames it),
// plus one commit of its own on main. The commit is written by the
// harness as a loose object and published by writing the ref file, so a
// thousand repositories cost no git process. The copies are cached under
// the work directory too; each run serves hard-linked copies of them, which
// its pushes (the storm, the fan-out) may change.

// fleetFixtureVersion is part of the fleet cache's key.
const fleetFixtureVersion = 1

// upTips tracks the tips the harness moved in the run's upstreams, and the
// trees of the template's branches (every commit the harness writes keeps
// its parent's tree).
type upTips struct {
	mu    sync.Mutex
	base  map[string][2]string // template ref -> commit, tree
	moved map[string]string    // "<repo>\x00<ref>" -> commit
	seq   int
}

func (t *upTips) tip(repo int, ref string) (commit, tree string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, ok := t.base[ref]
	if !ok {
		return "", "", false
	}
	if c, moved := t.moved[fleetID(repo)+"\x00"+ref]; moved {
		return c, b[1], true
	}
	if ref == "refs/heads/main" {
		return fleetMainCommit(repo, b[0], b[1]), b[1], true
	}
	return b[0], b[1], true
}

// fleetMainCommit is the commit that makes fleet repository i its own: on
// top of the template's main, same tree, fixed date.
func fleetMainCommit(i int, parent, tree string) string {
	sha, _ := looseCommit(parent, tree, fmt.Sprintf("fleet repository %d", i), 0)
	return sha
}

// looseCommit returns the id and the loose-object bytes of a commit
// (parent "": a root commit).
func looseCommit(parent, tree, msg string, seq int) (string, []byte) {
	when := strconv.FormatInt(gittest.Base+20_000_000+int64(seq), 10) + " +0000"
	parents := ""
	if parent != "" {
		parents = "parent " + parent + "\n"
	}
	body := fmt.Sprintf("tree %s\n%sauthor Bench Author <bench@example.com> %s\ncommitter Bench Committer <bench@example.com> %s\n\n%s\n",
		tree, parents, when, when, msg)
	raw := append(fmt.Appendf(nil, "commit %d\x00", len(body)), body...)
	sum := sha1.Sum(raw)
	return hex.EncodeToString(sum[:]), raw
}

// writeLoose stores a loose object (raw is "<type> <size>\0<content>").
func writeLoose(gitDir, sha string, raw []byte) error {
	dir := filepath.Join(gitDir, "objects", sha[:2])
	path := filepath.Join(dir, sha[2:])
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	_, _ = zw.Write(raw)
	if err := zw.Close(); err != nil {
		return err
	}
	return writeAtomic(path, buf.Bytes(), 0o444)
}

// writeRef publishes ref (refs/heads/x) at sha as a loose ref, which
// overrides the packed one.
func writeRef(gitDir, ref, sha string) error {
	path := filepath.Join(gitDir, filepath.FromSlash(ref))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return writeAtomic(path, []byte(sha+"\n"), 0o644)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".bench-tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// push writes a new commit on top of ref in fleet repository repo and
// returns a function that publishes it (moves the ref), and its id.
func (t *upTips) push(gitDir string, repo int, ref string) (string, func() error, error) {
	parent, tree, ok := t.tip(repo, ref)
	if !ok {
		return "", nil, fmt.Errorf("%s: no %s in the template", fleetID(repo), ref)
	}
	t.mu.Lock()
	t.seq++
	seq := t.seq
	t.mu.Unlock()
	sha, raw := looseCommit(parent, tree, fmt.Sprintf("bench push %d to %s of %s", seq, ref, fleetID(repo)), seq)
	if err := writeLoose(gitDir, sha, raw); err != nil {
		return "", nil, err
	}
	publish := func() error {
		if err := writeRef(gitDir, ref, sha); err != nil {
			return err
		}
		t.mu.Lock()
		t.moved[fleetID(repo)+"\x00"+ref] = sha
		t.mu.Unlock()
		return nil
	}
	return sha, publish, nil
}

// fleetUpstreams makes the run's upstreams of n fleet repositories
// (building the cached ones first when needed) and returns the directory
// git daemon serves.
func (b *bench) fleetUpstreams(ctx context.Context, n int) (string, *upTips, error) {
	shape := gittest.Shape{Branches: b.opt.fleet.branches, MetadataEvery: 1, Bare: true}
	template, err := b.fx.get(shape)
	if err != nil {
		return "", nil, err
	}
	tips := &upTips{base: map[string][2]string{}, moved: map[string]string{}}
	out, err := b.git.out(ctx, template, "for-each-ref", "--format=%(refname) %(objectname) %(tree)", "refs/heads/")
	if err != nil {
		return "", nil, err
	}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 3 {
			tips.base[f[0]] = [2]string{f[1], f[2]}
		}
	}
	main, ok := tips.base["refs/heads/main"]
	if !ok {
		return "", nil, fmt.Errorf("fleet template %s has no main", template)
	}
	cache := filepath.Join(b.fx.dir, fmt.Sprintf("fleet-v%d-%s", fleetFixtureVersion, shapeKey(shape)), "fleet")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", nil, fmt.Errorf("fleet fixtures: %w", err)
	}
	start := time.Now()
	built := 0
	for i := range n {
		if ctx.Err() != nil {
			return "", nil, ctx.Err()
		}
		dst := filepath.Join(cache, fleetID(i)+".git")
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		tmp := dst + ".build"
		_ = os.RemoveAll(tmp)
		if err := linkTree(template, tmp); err != nil {
			return "", nil, fmt.Errorf("fleet fixture %s: %w", fleetID(i), err)
		}
		sha, raw := looseCommit(main[0], main[1], fmt.Sprintf("fleet repository %d", i), 0)
		if err := writeLoose(tmp, sha, raw); err != nil {
			return "", nil, fmt.Errorf("fleet fixture %s: %w", fleetID(i), err)
		}
		if err := writeRef(tmp, "refs/heads/main", sha); err != nil {
			return "", nil, fmt.Errorf("fleet fixture %s: %w", fleetID(i), err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			return "", nil, fmt.Errorf("fleet fixture %s: %w", fleetID(i), err)
		}
		built++
	}
	if built > 0 {
		note := fmt.Sprintf("fleet fixtures: %d repositories of %s branches built in %s (hard-linked copies of one template, a commit of their own each; cached)",
			built, fmtCount(b.opt.fleet.branches), fmtDuration(time.Since(start)))
		b.logf("%s", note)
		b.fleetNotes = append(b.fleetNotes, note)
	}
	up := filepath.Join(b.runDir, "fleet", "up")
	start = time.Now()
	for i := range n {
		if err := linkTree(filepath.Join(cache, fleetID(i)+".git"), filepath.Join(up, "fleet", fleetID(i)+".git")); err != nil {
			return "", nil, fmt.Errorf("fleet upstream %s: %w", fleetID(i), err)
		}
	}
	b.logf("fleet upstreams: %d hard-linked copies in %s", n, fmtDuration(time.Since(start)))
	return up, tips, nil
}

// linkTree copies the directory tree src to dst (which must not exist)
// with hard links for the files.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", path)
		}
		return os.Link(path, target)
	})
}

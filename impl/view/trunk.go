package view

import (
	"strings"

	"github.com/go-git/go-git/v5/config"
)

// DetectTrunk guesses the trunk branch of repo, in this order:
//  1. refs/remotes/origin/HEAD's symref target (refs/remotes/origin/<b>) → b,
//     if the local branch b exists;
//  2. for a bare repository, HEAD's symref target, if that branch exists;
//  3. init.defaultBranch from the repository config, then from the user's
//     global git config, if that branch exists;
//  4. "main", then "master", if they exist.
//
// It returns "" when none applies.
func DetectTrunk(repo Repo) string {
	t := repo.Refs()
	exists := func(b string) bool {
		_, ok := t.Hash("refs/heads/" + b)
		return b != "" && ok
	}
	if r, ok := t.Ref("refs/remotes/origin/HEAD"); ok && r.Symbolic() {
		if b, ok := strings.CutPrefix(r.Target, "refs/remotes/origin/"); ok && exists(b) {
			return b
		}
	}
	cfg, cfgErr := repo.Config()
	if cfgErr == nil && cfg.Core.IsBare {
		if target, _, ok := t.Head(); ok {
			if b, ok := strings.CutPrefix(target, "refs/heads/"); ok && exists(b) {
				return b
			}
		}
	}
	var candidates []string
	if cfgErr == nil {
		candidates = append(candidates, cfg.Init.DefaultBranch)
	}
	if g, err := config.LoadConfig(config.GlobalScope); err == nil {
		candidates = append(candidates, g.Init.DefaultBranch)
	}
	candidates = append(candidates, "main", "master")
	for _, c := range candidates {
		if exists(c) {
			return c
		}
	}
	return ""
}

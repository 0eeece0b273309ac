package repos

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/stackd/stackd/impl/auth"
	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/datadir"
	"github.com/stackd/stackd/impl/gitrepo"
)

// ErrLocalWithDatabase marks a start-up refused because --cwd came with
// --database-url without --allow-local-with-database.
var ErrLocalWithDatabase = errors.New("working repository refused")

// FindLocal discovers the operator's working repository (nil if none) and
// checks that the data dir is not inside it, nor inside any other
// worktree of the same repository, symbolic links resolved
// (datadir.Check; a refusal wraps auth.ErrPosture). Nothing is created
// before: the data dir included.
func FindLocal(cfg config.Config, log *slog.Logger) (*gitrepo.Worktree, error) {
	if cfg.DatabaseURL != "" && !cfg.AllowLocalWithDatabase {
		// The working repository is a single-replica feature: its view
		// would differ between the replicas that share the database.
		if cfg.CwdExplicit {
			return nil, fmt.Errorf("%w: --cwd with --database-url: the working repository is a single-replica feature (--allow-local-with-database serves it anyway)", ErrLocalWithDatabase)
		}
		log.Info("not serving a working repository: with --database-url only mirrors are served (--allow-local-with-database serves the current directory's repository)")
		return nil, nil
	}
	var wt *gitrepo.Worktree
	var err error
	if cfg.CwdExplicit {
		if wt, err = gitrepo.Discover(cfg.Cwd); err != nil {
			return nil, fmt.Errorf("--cwd %s: %w", cfg.Cwd, err)
		}
	} else {
		dir := cfg.Cwd
		if dir == "" {
			if dir, err = os.Getwd(); err != nil {
				return nil, fmt.Errorf("current directory: %w", err)
			}
		}
		wt, err = gitrepo.Discover(dir)
		if errors.Is(err, gitrepo.ErrNotRepository) {
			log.Info("no git repository here; serving without a local repository", "dir", dir)
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("open repository at %s: %w", dir, err)
		}
	}
	if err := datadir.Check(cfg.DataDir, wt.Dirs()); errors.Is(err, datadir.ErrInsideRepository) {
		return nil, fmt.Errorf("%w: %w", auth.ErrPosture, err)
	} else if err != nil {
		return nil, err
	}
	return wt, nil
}

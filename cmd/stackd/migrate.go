package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/stackd/stackd/impl/config"
	"github.com/stackd/stackd/impl/store"
)

// migrate applies the database migrations that are missing and exits,
// saying which it applied: the PostgreSQL database of --database-url, or
// the SQLite file in --data-dir. `stackd serve` applies them at start-up
// as well; running migrate first lets an operator upgrade the schema once,
// before starting (new) replicas.
func migrate(ctx context.Context, args []string, stdout io.Writer) error {
	cfg := config.Default()
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s := &serveFlags{fs: fs, explicit: map[string]bool{}}
	s.str(&cfg.DatabaseURL, "database-url", "PostgreSQL URL (postgres://...); default: SQLite in --data-dir")
	s.str(&cfg.DataDir, "data-dir", "stackd's own data (the SQLite database when there is no --database-url)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, "usage: stackd migrate [flags]\n\nApply the database migrations that are missing, say which, and exit.\n\nflags:\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil
		}
		return fmt.Errorf("%w: %v (see stackd migrate -h)", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if err := errors.Join(s.envErrs...); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	cfg.DataDir = config.AbsPath(cfg.DataDir)
	// Only what migrate uses is checked (the rest keeps its defaults).
	if err := cfg.Validate(); err != nil {
		var only []string
		for _, line := range strings.Split(err.Error(), "\n") {
			if strings.HasPrefix(line, "--database-url") || strings.HasPrefix(line, "--data-dir") {
				only = append(only, line)
			}
		}
		if len(only) > 0 {
			return fmt.Errorf("%w: %s", errUsage, strings.Join(only, "; "))
		}
	}
	where := "sqlite " + store.SQLitePath(cfg.DataDir)
	if cfg.DatabaseURL != "" {
		where = store.DescribeURL(cfg.DatabaseURL)
	} else if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	st, err := store.OpenFor(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return err
	}
	defer func() { _ = st.Close() }()
	version, err := st.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "database: %s\n", where)
	applied := st.Applied()
	for _, step := range applied {
		fmt.Fprintf(stdout, "applied migration %d: %s\n", step.Version, step.Name)
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "schema version %d: up to date, nothing to apply\n", version)
	} else {
		fmt.Fprintf(stdout, "schema version %d\n", version)
	}
	return nil
}

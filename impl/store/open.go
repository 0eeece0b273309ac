package store

import (
	"context"
	"path/filepath"
)

// SQLitePath is the SQLite file of a server without a database URL:
// stackd.db in its data directory.
func SQLitePath(dataDir string) string { return filepath.Join(dataDir, "stackd.db") }

// OpenFor opens the store of a server and applies the migrations it
// lacks: PostgreSQL at databaseURL (--database-url) when set, else SQLite
// at SQLitePath(dataDir) (the directory must exist). Errors never contain
// the database URL's password.
func OpenFor(ctx context.Context, databaseURL, dataDir string) (Store, error) {
	if databaseURL != "" {
		st, err := OpenPostgres(ctx, databaseURL)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	st, err := Open(ctx, SQLitePath(dataDir))
	if err != nil {
		return nil, err
	}
	return st, nil
}

package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockFile is the file in the data directory that Lock locks.
const lockFile = "stackd.lock"

// ErrInUse marks a start-up refused because another stackd process uses
// the data directory in a way that excludes this one: a single server
// (without --database-url) alongside any other process, or a replica
// alongside a single server. Replicas on one database share it.
var ErrInUse = errors.New("the data directory is in use by another stackd process: give this one its own --data-dir (only replicas that share a database, --database-url, share one)")

// errLocksUnsupported: the data directory's filesystem has no file locks.
var errLocksUnsupported = errors.New("the data directory cannot be locked")

// Lock takes the data directory's lock (an flock on <dir>/stackd.lock,
// held until release): exclusive for a server on SQLite, which owns its
// mirrors alone; shared for a replica on PostgreSQL, whose mirrors are
// guarded by leases. So two single servers, or a single server and
// replicas, never write one data directory at once: the second one finds
// it in use (ErrInUse). A lock dies with its process, SIGKILL included.
// On a filesystem without locks the error wraps errLocksUnsupported: the
// caller warns and goes on.
func Lock(dir string, shared bool) (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	how := syscall.LOCK_EX
	if shared {
		how = syscall.LOCK_SH
	}
	for {
		err = syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	switch {
	case err == nil:
		return func() { _ = f.Close() }, nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		_ = f.Close()
		return nil, ErrInUse
	default: // ENOLCK, EOPNOTSUPP: a filesystem without locks
		_ = f.Close()
		return nil, fmt.Errorf("%w: %w", errLocksUnsupported, err)
	}
}

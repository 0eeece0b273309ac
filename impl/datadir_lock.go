package impl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDataDir takes the data directory's lock (an flock on
// <data-dir>/stackd.lock, held until release): exclusive for a server on
// SQLite, which owns its mirrors alone; shared for a replica on
// PostgreSQL, whose mirrors are guarded by leases. So two single servers,
// or a single server and replicas, never write one data directory at
// once: the second one finds it in use (ErrDataDirInUse). A lock dies
// with its process, SIGKILL included. On a filesystem without locks the
// error wraps errLocksUnsupported: the caller warns and goes on.
func lockDataDir(dir string, shared bool) (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, dataDirLock), os.O_RDWR|os.O_CREATE, 0o600)
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
		return nil, ErrDataDirInUse
	default: // ENOLCK, EOPNOTSUPP: a filesystem without locks
		_ = f.Close()
		return nil, fmt.Errorf("%w: %w", errLocksUnsupported, err)
	}
}

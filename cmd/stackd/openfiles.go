package main

import (
	"log/slog"

	"github.com/stackd/stackd/impl/config"
)

// openFilesLimit is the process's open-files limit (RLIMIT_NOFILE) as
// start-up found and left it.
type openFilesLimit struct {
	// Soft is the limit in force after raising it; Hard its ceiling;
	// Before the soft limit found. Known is false where the limit cannot
	// be read (not Linux).
	Soft, Hard, Before uint64
	Known              bool
	// Err is why raising failed (nil: raised, or already at Hard).
	Err error
}

// logOpenFiles logs the open-files limit, and warns when it is below what
// --max-event-streams needs (config.FileDescriptorsNeeded): streams past
// it would fail to be accepted (the listener's accept fails with EMFILE)
// and so would the server's own files.
func logOpenFiles(log *slog.Logger, l openFilesLimit, cfg config.Config) {
	if !l.Known {
		return
	}
	need := cfg.FileDescriptorsNeeded()
	attrs := []any{"soft", l.Soft, "hard", l.Hard, "before", l.Before, "needed", need}
	if l.Err != nil {
		attrs = append(attrs, "err", l.Err)
	}
	if l.Soft < need {
		log.Warn("the open-files limit (RLIMIT_NOFILE) is below what --max-event-streams needs: raise the hard limit (systemd LimitNOFILE=, docker --ulimit nofile=) or lower --max-event-streams",
			append(attrs, "maxEventStreams", cfg.MaxEventStreams)...)
		return
	}
	log.Info("open files limit", attrs...)
}

package store

// A migration is one numbered step of the schema. Steps are append-only:
// never edit a released one, add the next. Every engine applies the steps
// above the version it has recorded in its migrations table, in order, in
// one transaction (SQLite and PostgreSQL both have transactional DDL), and
// refuses a database whose version is newer than its own list.
//
// Portable is the text every engine runs. Where an engine needs its own
// spelling of a step, that engine's field holds it instead; a step's
// meaning (tables, columns, constraints) is the same in every engine, so
// the Go code above it never asks which engine it talks to. Only SQLite is
// built today: a PostgreSQL engine adds its field, filled for the steps
// whose Portable text it cannot run (step 1's AUTOINCREMENT, which would
// be an identity column there; step 2's ids would use COLLATE "C" so that
// text order is byte order, as SQLite's BINARY collation has it).
type migration struct {
	version int
	name    string
	// Portable is SQL that SQLite and PostgreSQL both run; empty when
	// every engine has its own text.
	portable string
	// sqlite is SQLite's own text for the step, when Portable is empty.
	sqlite string
}

// sqliteText is the step as SQLite runs it.
func (m migration) sqliteText() string {
	if m.sqlite != "" {
		return m.sqlite
	}
	return m.portable
}

// migrations is the schema, step by step.
var migrations = []migration{
	{version: 1, name: "sessions and audit log", sqlite: `CREATE TABLE sessions (
		id_hash        TEXT PRIMARY KEY,
		subject        TEXT NOT NULL,
		email          TEXT NOT NULL DEFAULT '',
		email_verified INTEGER NOT NULL DEFAULT 0,
		name           TEXT NOT NULL DEFAULT '',
		groups_json    TEXT NOT NULL DEFAULT '[]',
		created_at     INTEGER NOT NULL,
		expires_at     INTEGER NOT NULL
	);
	CREATE INDEX sessions_expires_at ON sessions (expires_at);
	CREATE TABLE audit (
		id      INTEGER PRIMARY KEY AUTOINCREMENT,
		at      INTEGER NOT NULL,
		actor   TEXT NOT NULL DEFAULT '',
		method  TEXT NOT NULL DEFAULT '',
		action  TEXT NOT NULL DEFAULT '',
		repo    TEXT NOT NULL DEFAULT '',
		outcome TEXT NOT NULL DEFAULT '',
		client  TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX audit_at ON audit (at);`},

	// repos: the repositories onboarded through the API. id_key is the
	// lower-case id (ids are unique case-insensitively).
	//
	// syncs: the last results of every repository (the refresher keeps
	// --sync-history finished ones per repository). id is a UUIDv7 in
	// text form, so text order is time order; repo_key is the lower-case
	// repository id; times are Unix nanoseconds (NULL: not yet); state
	// is queued, running, succeeded or failed; changes_json is the JSON
	// array of RefChange.
	{version: 2, name: "repositories and sync history", portable: `CREATE TABLE repos (
		id_key     TEXT PRIMARY KEY,
		id         TEXT NOT NULL,
		url        TEXT NOT NULL,
		trunk      TEXT NOT NULL DEFAULT '',
		full_name  TEXT NOT NULL DEFAULT '',
		created_at BIGINT NOT NULL,
		created_by TEXT NOT NULL DEFAULT ''
	);
	CREATE TABLE syncs (
		id            TEXT PRIMARY KEY,
		repo_key      TEXT NOT NULL,
		repo_id       TEXT NOT NULL,
		trigger_kind  TEXT NOT NULL,
		mode          TEXT NOT NULL,
		state         TEXT NOT NULL,
		queued_at     BIGINT NOT NULL,
		started_at    BIGINT,
		finished_at   BIGINT,
		duration_ms   BIGINT,
		view_version  BIGINT NOT NULL DEFAULT 0,
		changes_total INTEGER NOT NULL DEFAULT 0,
		changes_json  TEXT NOT NULL DEFAULT '[]',
		error         TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX syncs_repo ON syncs (repo_key, id);
	CREATE INDEX syncs_unfinished ON syncs (state);`},
}

package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDefaultReplicaID: <hostname>:<port> when both are known, else a
// random replica-<hex> that differs between calls.
func TestDefaultReplicaID(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skipf("no hostname: %v", err)
	}
	if got := DefaultReplicaID("0.0.0.0:8080"); got != host+":8080" {
		t.Errorf("DefaultReplicaID = %q, want %q", got, host+":8080")
	}
	random := regexp.MustCompile(`^replica-[0-9a-f]{8}$`)
	a, b := DefaultReplicaID("127.0.0.1:0"), DefaultReplicaID("nonsense")
	if !random.MatchString(a) || !random.MatchString(b) || a == b {
		t.Errorf("random ids %q, %q", a, b)
	}
	c := Default()
	c.ResolveDefaults()
	if c.ReplicaID != host+":8080" {
		t.Errorf("ResolveDefaults: replica id %q", c.ReplicaID)
	}
	c.ReplicaID = "kept"
	c.ResolveDefaults()
	if c.ReplicaID != "kept" {
		t.Errorf("ResolveDefaults replaced a set replica id: %q", c.ReplicaID)
	}
}

// TestValidateDatabase: the URL must be PostgreSQL's and is never
// repeated; --cwd needs --allow-local-with-database; replica ids are
// checked.
func TestValidateDatabase(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *Config)
		want string // "" = valid
	}{
		{"sqlite", func(c *Config) {}, ""},
		{"postgres", func(c *Config) { c.DatabaseURL = "postgres://u:sekrit@db/x" }, ""},
		{"postgresql", func(c *Config) { c.DatabaseURL = "PostgreSQL://db/x" }, ""},
		{"not postgres", func(c *Config) { c.DatabaseURL = "mysql://u:sekrit@db/x" }, "--database-url: want a postgres://"},
		{"key/value", func(c *Config) { c.DatabaseURL = "host=db password=sekrit" }, "--database-url: want a postgres://"},
		{"cwd", func(c *Config) { c.DatabaseURL, c.Cwd, c.CwdExplicit = "postgres://u:sekrit@db/x", ".", true }, "--allow-local-with-database"},
		{"cwd allowed", func(c *Config) {
			c.DatabaseURL, c.Cwd, c.CwdExplicit, c.AllowLocalWithDatabase = "postgres://u:sekrit@db/x", ".", true, true
		}, ""},
		{"cwd without database", func(c *Config) { c.Cwd, c.CwdExplicit = ".", true }, ""},
		{"replica id", func(c *Config) { c.ReplicaID = "host-1.example:8080" }, ""},
		{"replica id with a space", func(c *Config) { c.ReplicaID = "a b" }, `--replica-id "a b"`},
		{"replica id too long", func(c *Config) { c.ReplicaID = strings.Repeat("r", 129) }, "--replica-id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.DataDir = t.TempDir()
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			case err != nil && strings.Contains(err.Error(), "sekrit"):
				t.Fatalf("Validate() shows the password: %v", err)
			}
		})
	}
}

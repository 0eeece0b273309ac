// Package memlimit keeps stackd within a memory budget: it chooses and
// sets the process's soft memory limit at start-up (Choose, Apply:
// runtime/debug.SetMemoryLimit, the limit GOMEMLIMIT also sets), and tells
// when the process is short of memory (Monitor), so that the server
// refuses to start new fetches rather than be killed by the kernel.
//
// The limit is soft: the garbage collector works harder as the process
// nears it, and running work may go past it. What a collection cannot
// give back (the live heap and the runtime's own memory) is what the
// Monitor compares with it.
package memlimit

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/stackd/stackd/impl/bytesize"
)

// Setting is a parsed --memory-limit.
type Setting struct {
	// Auto: GOMEMLIMIT when set, else a fraction of the cgroup's memory
	// limit, else DefaultLimit (see Choose).
	Auto bool
	// Bytes is the limit when not Auto; 0 means no limit.
	Bytes int64
}

// MinLimit is the smallest limit --memory-limit accepts: below it the
// collector would run all the time and every fetch would be refused.
const MinLimit = 64 << 20

// DefaultLimit is the limit of Auto without GOMEMLIMIT or a cgroup limit.
const DefaultLimit = 2 << 30

// CgroupFraction is the share of the cgroup's memory limit that Auto
// takes, leaving the rest for what the Go runtime does not count (the C
// library, the kernel's page cache charged to the cgroup) and for the
// soft limit's overshoot.
const CgroupFraction = 0.8

// Parse reads a --memory-limit value: "auto" (or empty), "off" or "0" (no
// limit), or a whole number of bytes with an optional unit B, KiB, MiB,
// GiB or TiB (GOMEMLIMIT's syntax; case does not matter), at least
// MinLimit.
func Parse(s string) (Setting, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	switch v {
	case "", "auto":
		return Setting{Auto: true}, nil
	case "off", "none", "0":
		return Setting{}, nil
	}
	n, err := bytesize.Parse(v)
	if errors.Is(err, bytesize.ErrSyntax) {
		return Setting{}, errors.New(`want a size such as 512MiB or 2GiB, "auto" or "off"`)
	}
	if err != nil {
		return Setting{}, err
	}
	if n < MinLimit {
		return Setting{}, fmt.Errorf("at least %s, or \"off\"", Format(MinLimit))
	}
	return Setting{Bytes: n}, nil
}

// Format writes a number of bytes in the largest binary unit that divides
// it (2GiB, 1536MiB, 1000B), as Parse reads it; 0 is "off".
func Format(b int64) string {
	if b <= 0 || b == math.MaxInt64 {
		return "off"
	}
	return bytesize.Format(b)
}

// Where a Choice came from.
const (
	FromFlag       = "--memory-limit"
	FromGOMEMLIMIT = "GOMEMLIMIT"
	FromCgroup     = "cgroup"
	FromDefault    = "default"
)

// Choice is the limit start-up settles on.
type Choice struct {
	// Bytes is the limit; 0: none.
	Bytes int64
	// From says why: FromFlag, FromGOMEMLIMIT, FromCgroup or FromDefault.
	From string
	// Cgroup is the cgroup's memory limit (0 when none was found).
	Cgroup int64
}

// Choose decides the memory limit. An explicit size or "off" wins.
// Auto keeps the limit GOMEMLIMIT gave the runtime (runtimeLimit, from
// debug.SetMemoryLimit(-1); math.MaxInt64 is none) when that variable is
// set (gomemlimit not empty); else it takes CgroupFraction of the
// smallest memory limit of the process's cgroup and its ancestors, read
// under root (cgroup v2, else v1); else DefaultLimit.
func Choose(s Setting, gomemlimit string, runtimeLimit int64, root fs.FS) Choice {
	cg := CgroupLimit(root)
	switch {
	case !s.Auto:
		return Choice{Bytes: s.Bytes, From: FromFlag, Cgroup: cg}
	case gomemlimit != "":
		if runtimeLimit == math.MaxInt64 || runtimeLimit < 0 {
			runtimeLimit = 0
		}
		return Choice{Bytes: runtimeLimit, From: FromGOMEMLIMIT, Cgroup: cg}
	case cg > 0:
		return Choice{Bytes: int64(float64(cg) * CgroupFraction), From: FromCgroup, Cgroup: cg}
	default:
		return Choice{Bytes: DefaultLimit, From: FromDefault}
	}
}

// Apply sets c as the process's soft memory limit (none: math.MaxInt64)
// and returns the limit it replaced.
func Apply(c Choice) int64 {
	b := c.Bytes
	if b <= 0 {
		b = math.MaxInt64
	}
	return debug.SetMemoryLimit(b)
}

// unlimitedV1 is the smallest value of cgroup v1's memory.limit_in_bytes
// taken for "no limit" (the kernel writes the largest page-aligned
// int64, 9223372036854771712).
const unlimitedV1 = 1 << 62

// CgroupLimit is the memory limit of the process's cgroup: the smallest
// memory.max (cgroup v2) of its cgroup and the cgroups above it, else the
// smallest memory.limit_in_bytes (cgroup v1) likewise; 0 when there is
// none. root is the file system root (os.DirFS("/")): the process's
// cgroups are read from proc/self/cgroup, the limits under sys/fs/cgroup.
func CgroupLimit(root fs.FS) int64 {
	v2, v1 := "/", ""
	if f, err := root.Open("proc/self/cgroup"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// hierarchy-id:controllers:path
			parts := strings.SplitN(sc.Text(), ":", 3)
			if len(parts) != 3 {
				continue
			}
			if parts[0] == "0" && parts[1] == "" {
				v2 = parts[2]
			}
			for _, c := range strings.Split(parts[1], ",") {
				if c == "memory" {
					v1 = parts[2]
				}
			}
		}
		_ = f.Close()
	}
	if lim := smallest(root, "sys/fs/cgroup", v2, "memory.max"); lim > 0 {
		return lim
	}
	if v1 != "" {
		return smallest(root, "sys/fs/cgroup/memory", v1, "memory.limit_in_bytes")
	}
	return 0
}

// smallest is the smallest limit in file of base/dir and of each
// directory above it up to base; 0 when none is set. A cgroup namespace
// may show a path that does not exist under base: such levels are
// skipped, base itself is always read.
func smallest(root fs.FS, base, dir, file string) int64 {
	var best int64
	dir = path.Clean("/" + dir)
	for {
		p := path.Join(base, dir, file)
		if lim := readLimit(root, p); lim > 0 && (best == 0 || lim < best) {
			best = lim
		}
		if dir == "/" {
			return best
		}
		dir = path.Dir(dir)
	}
}

// readLimit reads one limit file: a number of bytes, or "max" (v2) or a
// value from unlimitedV1 up (v1) for none (0).
func readLimit(root fs.FS, p string) int64 {
	raw, err := fs.ReadFile(root, p)
	if err != nil {
		return 0
	}
	v := strings.TrimSpace(string(raw))
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n >= unlimitedV1 {
		return 0
	}
	return n
}

// Package bytesize reads and writes sizes in bytes as the command line and
// the config file take them: a whole number with an optional binary unit,
// B, KiB, MiB, GiB or TiB (GOMEMLIMIT's syntax; case does not matter), such
// as 512MiB or 2GiB.
package bytesize

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// units are the units, largest first: the lower-case suffix and how
// Format writes it.
var units = []struct {
	suffix, name string
	size         int64
}{{"tib", "TiB", 1 << 40}, {"gib", "GiB", 1 << 30}, {"mib", "MiB", 1 << 20}, {"kib", "KiB", 1 << 10}, {"b", "B", 1}}

// ErrSyntax reports a value that is not a size.
var ErrSyntax = errors.New("want a size such as 512MiB or 2GiB")

// Parse reads a size: a whole, non-negative number of bytes with an
// optional unit.
func Parse(s string) (int64, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	num, mult := v, int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.size
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, ErrSyntax
	}
	if n > math.MaxInt64/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}

// Format writes a number of bytes in the largest binary unit that divides
// it (2GiB, 1536MiB, 1000B), as Parse reads it.
func Format(b int64) string {
	for _, u := range units {
		if b != 0 && b%u.size == 0 {
			return strconv.FormatInt(b/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(b, 10) + "B"
}

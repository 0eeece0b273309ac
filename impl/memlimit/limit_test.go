package memlimit

import (
	"math"
	"runtime/debug"
	"strings"
	"testing"
	"testing/fstest"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Setting
		err  string
	}{
		{"", Setting{Auto: true}, ""},
		{"auto", Setting{Auto: true}, ""},
		{" AUTO ", Setting{Auto: true}, ""},
		{"off", Setting{}, ""},
		{"0", Setting{}, ""},
		{"none", Setting{}, ""},
		{"1GiB", Setting{Bytes: 1 << 30}, ""},
		{"512MiB", Setting{Bytes: 512 << 20}, ""},
		{"512 mib", Setting{Bytes: 512 << 20}, ""},
		{"2TiB", Setting{Bytes: 2 << 40}, ""},
		{"65536KiB", Setting{Bytes: 64 << 20}, ""},
		{"67108864", Setting{Bytes: 64 << 20}, ""},
		{"67108864B", Setting{Bytes: 64 << 20}, ""},
		{"63MiB", Setting{}, "at least 64MiB"},
		{"1KiB", Setting{}, "at least 64MiB"},
		{"1.5GiB", Setting{}, "want a size"},
		{"-1GiB", Setting{}, "want a size"},
		{"1G", Setting{}, "want a size"},
		{"1GB", Setting{}, "want a size"},
		{"lots", Setting{}, "want a size"},
		{"GiB", Setting{}, "want a size"},
		{"9999999TiB", Setting{}, "too large"},
		{"99999999999999999999", Setting{}, "want a size"},
	} {
		got, err := Parse(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("Parse(%q): %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("Parse(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.err)
		case tc.err == "" && got != tc.want:
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want string
	}{
		{0, "off"}, {math.MaxInt64, "off"}, {2 << 30, "2GiB"}, {1536 << 20, "1536MiB"},
		{1000, "1000B"}, {64 << 20, "64MiB"}, {3 << 40, "3TiB"}, {(64 << 20) + 1024, "65537KiB"},
	} {
		if got := Format(tc.in); got != tc.want {
			t.Errorf("Format(%d) = %q, want %q", tc.in, got, tc.want)
		}
		if tc.in >= MinLimit && tc.in != math.MaxInt64 {
			if back, err := Parse(tc.want); err != nil || back.Bytes != tc.in {
				t.Errorf("Parse(Format(%d)) = %+v, %v", tc.in, back, err)
			}
		}
	}
}

// cgroupFS builds a file system root with /proc/self/cgroup and limit
// files.
func cgroupFS(self string, files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	if self != "" {
		fsys["proc/self/cgroup"] = &fstest.MapFile{Data: []byte(self)}
	}
	for p, v := range files {
		fsys[p] = &fstest.MapFile{Data: []byte(v + "\n")}
	}
	return fsys
}

func TestCgroupLimit(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		name string
		fs   fstest.MapFS
		want int64
	}{
		{"nothing", fstest.MapFS{}, 0},
		{"v2, limit at the root (a container's namespace)", cgroupFS("0::/\n", map[string]string{
			"sys/fs/cgroup/memory.max": "4294967296"}), 4 * gib},
		{"v2, no limit", cgroupFS("0::/\n", map[string]string{"sys/fs/cgroup/memory.max": "max"}), 0},
		{"v2, the smallest of the process's cgroup and its ancestors", cgroupFS("0::/system.slice/stackd.service\n", map[string]string{
			"sys/fs/cgroup/system.slice/stackd.service/memory.max": "max",
			"sys/fs/cgroup/system.slice/memory.max":                "2147483648",
			"sys/fs/cgroup/memory.max":                             "8589934592"}), 2 * gib},
		{"v2, the own limit is the smallest", cgroupFS("0::/a/b\n", map[string]string{
			"sys/fs/cgroup/a/b/memory.max": "1073741824",
			"sys/fs/cgroup/a/memory.max":   "2147483648"}), gib},
		{"v2, a path the namespace does not show", cgroupFS("0::/../outside\n", map[string]string{
			"sys/fs/cgroup/memory.max": "3221225472"}), 3 * gib},
		{"v1", cgroupFS("12:pids:/\n4:memory:/docker/abc\n0::/\n", map[string]string{
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "1073741824",
			"sys/fs/cgroup/memory/memory.limit_in_bytes":            "9223372036854771712"}), gib},
		{"v1, unlimited", cgroupFS("4:memory:/\n", map[string]string{
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712"}), 0},
		{"v1 with other controllers in the line", cgroupFS("5:cpu,memory:/x\n", map[string]string{
			"sys/fs/cgroup/memory/x/memory.limit_in_bytes": "536870912"}), gib / 2},
		{"garbage", cgroupFS("0::/\n", map[string]string{"sys/fs/cgroup/memory.max": "lots"}), 0},
	} {
		if got := CgroupLimit(tc.fs); got != tc.want {
			t.Errorf("%s: CgroupLimit = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestChoose(t *testing.T) {
	const gib = 1 << 30
	limited := cgroupFS("0::/\n", map[string]string{"sys/fs/cgroup/memory.max": "4294967296"})
	none := fstest.MapFS{}
	for _, tc := range []struct {
		name       string
		setting    string
		gomemlimit string
		runtime    int64
		fs         fstest.MapFS
		want       Choice
	}{
		// 80% of 4GiB, rounded down.
		{"auto in a cgroup", "auto", "", math.MaxInt64, limited, Choice{Bytes: 3435973836, From: FromCgroup, Cgroup: 4 * gib}},
		{"auto elsewhere", "auto", "", math.MaxInt64, none, Choice{Bytes: DefaultLimit, From: FromDefault}},
		{"auto respects GOMEMLIMIT", "auto", "3GiB", 3 * gib, limited, Choice{Bytes: 3 * gib, From: FromGOMEMLIMIT, Cgroup: 4 * gib}},
		{"auto respects GOMEMLIMIT=off", "", "off", math.MaxInt64, limited, Choice{From: FromGOMEMLIMIT, Cgroup: 4 * gib}},
		{"a size wins over GOMEMLIMIT", "1GiB", "3GiB", 3 * gib, limited, Choice{Bytes: gib, From: FromFlag, Cgroup: 4 * gib}},
		{"off wins over GOMEMLIMIT", "off", "3GiB", 3 * gib, none, Choice{From: FromFlag}},
		{"a size above the cgroup's is kept", "8GiB", "", math.MaxInt64, limited, Choice{Bytes: 8 * gib, From: FromFlag, Cgroup: 4 * gib}},
	} {
		s, err := Parse(tc.setting)
		if err != nil {
			t.Fatal(err)
		}
		if got := Choose(s, tc.gomemlimit, tc.runtime, tc.fs); got != tc.want {
			t.Errorf("%s: Choose = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestApply sets the process's limit (and puts the test process's back).
func TestApply(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	if prev := Apply(Choice{Bytes: 3 << 30, From: FromFlag}); prev != orig {
		t.Fatalf("Apply returned %d, the limit was %d", prev, orig)
	}
	if got := debug.SetMemoryLimit(-1); got != 3<<30 {
		t.Fatalf("limit %d after Apply(3GiB)", got)
	}
	if got := ReadRuntime().Limit; got != 3<<30 {
		t.Fatalf("ReadRuntime's limit %d after Apply(3GiB)", got)
	}
	Apply(Choice{From: FromFlag})
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("limit %d after Apply(off)", got)
	}
}

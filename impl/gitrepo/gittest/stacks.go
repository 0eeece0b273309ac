package gittest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Shape describes a deterministic repository of stacked branches, built by
// BuildStacks with git fast-import (fast enough for 50,000 branches).
//
// Trunk is "main" with TrunkCommits linear commits. The non-trunk branches
// form stacks of Depth branches each (the last stack may be shorter); every
// branch has exactly one commit on top of its parent branch (the first of a
// stack on top of a trunk commit). Branch i of stack s is
// StackBranch(s, i). Every MetadataEvery-th branch (counting from the first)
// gets a stackit metadata ref refs/stackit/metadata/<branch> naming its
// parent and a pull request; the others are found by ancestry.
type Shape struct {
	Branches     int  // non-trunk branches
	Depth        int  // branches per stack; default 3
	TrunkCommits int  // commits on main; default 1
	Spread       bool // stacks fork from trunk commits spread over its whole history (else all from trunk's tip)
	// MetadataEvery: 1 gives every branch metadata, 2 every other one, 0 none.
	MetadataEvery int
	// Bare makes a bare repository (an upstream); otherwise main is
	// checked out in a work tree.
	Bare bool
}

// Base is the committer date (unix seconds) of the first trunk commit.
const Base = 1_600_000_000

// StackBranch names branch level (1-based) of stack s.
func StackBranch(s, level int) string { return fmt.Sprintf("st%05d-%d", s, level) }

func (s Shape) norm() Shape {
	if s.Depth <= 0 {
		s.Depth = 3
	}
	if s.TrunkCommits <= 0 {
		s.TrunkCommits = 1
	}
	return s
}

// Stacks is the number of stacks of the shape.
func (s Shape) Stacks() int {
	s = s.norm()
	return (s.Branches + s.Depth - 1) / s.Depth
}

// StackMeta is the stackit metadata blob BuildStacks writes.
type StackMeta struct {
	ParentBranchName string `json:"parentBranchName"`
	PRInfo           struct {
		Number int    `json:"number"`
		Title  string `json:"title"`
		State  string `json:"state"`
	} `json:"prInfo"`
}

// GitEnv is an environment for git commands isolated from the user's and
// the system's configuration, with fixed identities.
func GitEnv(home string) []string {
	return append(os.Environ(),
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CONFIG_SYSTEM=/dev/null",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Ada Author",
		"GIT_AUTHOR_EMAIL=ada@example.com",
		"GIT_COMMITTER_NAME=Carl Committer",
		"GIT_COMMITTER_EMAIL=carl@example.com",
		"LC_ALL=C",
	)
}

// BuildStacks creates dir (which must not exist) as a repository of the
// given shape: the same shape always gives the same commit ids. Its refs
// are packed, as git gc or a clone leaves them.
func BuildStacks(dir string, s Shape) error {
	s = s.norm()
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("gittest: %s exists", dir)
	}
	home, err := os.MkdirTemp("", "gittest-home-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	env := GitEnv(home)
	run := func(stdin []byte, args ...string) ([]byte, error) {
		cmd := exec.Command("git", args...)
		cmd.Env = env
		cmd.Stdin = bytes.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("git %s: %w: %s", strings.Join(args[:min(len(args), 4)], " "), err, errb.String())
		}
		return out.Bytes(), nil
	}
	initArgs := []string{"-c", "init.defaultBranch=main", "init", "-q"}
	if s.Bare {
		initArgs = append(initArgs, "--bare")
	}
	if _, err := run(nil, append(initArgs, dir)...); err != nil {
		return err
	}
	gitDir := dir
	if !s.Bare {
		gitDir = filepath.Join(dir, ".git")
	}
	g := func(stdin []byte, args ...string) ([]byte, error) {
		return run(stdin, append([]string{"--git-dir=" + gitDir}, args...)...)
	}

	stream, metas := s.fastImport()
	marks := filepath.Join(home, "marks")
	if _, err := g(stream, "fast-import", "--quiet", "--export-marks="+marks); err != nil {
		return err
	}
	if len(metas) > 0 {
		byMark, err := readMarks(marks)
		if err != nil {
			return err
		}
		var upd bytes.Buffer
		for _, m := range metas {
			fmt.Fprintf(&upd, "create refs/stackit/metadata/%s %s\n", m.branch, byMark[m.mark])
		}
		if _, err := g(upd.Bytes(), "update-ref", "--stdin"); err != nil {
			return err
		}
	}
	if _, err := g(nil, "pack-refs", "--all"); err != nil {
		return err
	}
	if !s.Bare {
		if _, err := run(nil, "-C", dir, "checkout", "-q", "-f", "main"); err != nil {
			return err
		}
	}
	return nil
}

type metaMark struct {
	branch string
	mark   int
}

// fastImport writes the fast-import stream of the shape; metadata blobs
// are marked and their refs listed, to be created after the import.
func (s Shape) fastImport() ([]byte, []metaMark) {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	data := func(text string) { fmt.Fprintf(w, "data %d\n%s\n", len(text), text) }
	mark := 0
	next := func() int { mark++; return mark }
	trunk := make([]int, s.TrunkCommits)
	when := int64(Base)
	for k := range s.TrunkCommits {
		trunk[k] = next()
		fmt.Fprintf(w, "commit refs/heads/main\nmark :%d\n", trunk[k])
		fmt.Fprintf(w, "author Ada Author <ada@example.com> %d +0000\ncommitter Carl Committer <carl@example.com> %d +0000\n", when, when)
		data(fmt.Sprintf("trunk %d", k))
		if k > 0 {
			fmt.Fprintf(w, "from :%d\n", trunk[k-1])
		}
		fmt.Fprintf(w, "M 644 inline trunk.txt\n")
		data(strconv.Itoa(k))
		when += 60
	}
	var metas []metaMark
	branch := 0
	for st := 0; branch < s.Branches; st++ {
		fork := s.TrunkCommits - 1
		if s.Spread {
			fork = int(int64(st) * int64(s.TrunkCommits) / int64(s.Stacks()))
		}
		parentMark, parentName := trunk[fork], "main"
		t := int64(Base) + int64(fork)*60 + 1
		for level := 1; level <= s.Depth && branch < s.Branches; level++ {
			name := StackBranch(st, level)
			m := next()
			fmt.Fprintf(w, "commit refs/heads/%s\nmark :%d\n", name, m)
			fmt.Fprintf(w, "author Ada Author <ada@example.com> %d +0000\ncommitter Carl Committer <carl@example.com> %d +0000\n", t, t)
			data(fmt.Sprintf("%s: change %d\n\nPart %d of stack %d.", name, branch, level, st))
			fmt.Fprintf(w, "from :%d\nM 644 inline stacks/%s.txt\n", parentMark, name)
			data(name)
			if s.MetadataEvery > 0 && branch%s.MetadataEvery == 0 {
				var meta StackMeta
				meta.ParentBranchName = parentName
				meta.PRInfo.Number = branch + 1
				meta.PRInfo.Title = name
				meta.PRInfo.State = "OPEN"
				js, _ := json.Marshal(meta)
				bm := next()
				fmt.Fprintf(w, "blob\nmark :%d\n", bm)
				data(string(js))
				metas = append(metas, metaMark{branch: name, mark: bm})
			}
			parentMark, parentName = m, name
			t++
			branch++
		}
	}
	w.Flush()
	return b.Bytes(), metas
}

func readMarks(path string) (map[int]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	for line := range strings.Lines(string(raw)) {
		m, sha, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || !strings.HasPrefix(m, ":") {
			continue
		}
		n, err := strconv.Atoi(m[1:])
		if err != nil {
			return nil, fmt.Errorf("gittest: marks: %q", line)
		}
		out[n] = sha
	}
	return out, nil
}

package hostile

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// gitEnv is the environment of the git processes the server runs: the
// caller's without GIT_* variables (GIT_PROTOCOL above all: the server
// speaks protocol v0), and without system or global configuration.
func gitEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") {
			env = append(env, kv)
		}
	}
	return append(env, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0")
}

func gitOutput(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// baseRefs returns the refs of the repository at dir, with their peeled
// values (git show-ref -d), and HEAD's symref target ("" if detached).
func baseRefs(dir string) ([]Ref, string, error) {
	if _, err := gitOutput(dir, "rev-parse", "--git-dir"); err != nil {
		return nil, "", err
	}
	out, err := gitOutput(dir, "show-ref", "-d")
	if err != nil && len(out) > 0 {
		return nil, "", err
	} // an empty repository: show-ref fails without output
	var refs []Ref
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		id, name, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		h, err := parseHash(id)
		if err != nil {
			return nil, "", err
		}
		if base, peeled := strings.CutSuffix(name, "^{}"); peeled && len(refs) > 0 && refs[len(refs)-1].Name == base {
			refs[len(refs)-1].Peeled = h
			continue
		}
		refs = append(refs, Ref{Name: name, Hash: h})
	}
	head, _ := gitOutput(dir, "symbolic-ref", "-q", "HEAD")
	return refs, strings.TrimSpace(string(head)), nil
}

// objChecker answers whether the repository at dir holds an object,
// through one git cat-file --batch-check started on first use.
type objChecker struct {
	dir  string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	dead bool
}

func (c *objChecker) has(h plumbing.Hash) bool {
	if c.dead {
		return false
	}
	if c.cmd == nil {
		c.cmd = exec.Command("git", "cat-file", "--batch-check")
		c.cmd.Dir = c.dir
		c.cmd.Env = gitEnv()
		in, err := c.cmd.StdinPipe()
		if err != nil {
			c.dead = true
			return false
		}
		out, err := c.cmd.StdoutPipe()
		if err != nil {
			c.dead = true
			return false
		}
		if err := c.cmd.Start(); err != nil {
			c.dead = true
			return false
		}
		c.in, c.out = in, bufio.NewReader(out)
	}
	if _, err := fmt.Fprintf(c.in, "%s\n", h); err != nil {
		c.dead = true
		return false
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		c.dead = true
		return false
	}
	return !strings.HasSuffix(strings.TrimSpace(line), " missing")
}

func (c *objChecker) close() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.in.Close()
		_ = c.cmd.Wait()
	}
}

// uploadPack returns git upload-pack on dir with args, ended when the
// server closes.
func (s *Server) uploadPack(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", append(append([]string{"upload-pack"}, args...), dir)...)
	cmd.Env = gitEnv()
	return cmd
}

// quitContext returns a context that ends when the server closes (or
// cancel is called).
func (s *Server) quitContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-s.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// passGit serves a git:// session with git upload-pack on dir, recording
// the client's request as it passes.
func (s *Server) passGit(conn net.Conn, br *bufio.Reader, repo, dir string) error {
	ctx, cancel := s.quitContext()
	defer cancel()
	cmd := s.uploadPack(ctx, dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = conn
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	tapped := make(chan struct{})
	go func() {
		defer close(tapped)
		defer stdin.Close()
		s.tap(br, stdin, repo)
	}()
	err = cmd.Wait()
	_ = conn.Close() // ends the tap's read
	<-tapped
	if err != nil && ctx.Err() == nil && stderr.Len() > 0 {
		return fmt.Errorf("git upload-pack: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// tap copies a git:// client's upload-pack request to w, pkt-line by
// pkt-line, recording it at done (or at its end).
func (s *Server) tap(r *bufio.Reader, w io.Writer, repo string) {
	p := &reqParser{req: Request{Transport: "git"}}
	recorded := false
	rec := func() {
		if !recorded && len(p.req.Wants) > 0 {
			recorded = true
			s.record(repo, p.req)
		}
	}
	defer rec()
	for {
		payload, flush, raw, err := readPkt(r)
		if err != nil {
			return
		}
		end, done, perr := p.line(payload, flush)
		if done || perr != nil || (end && len(p.req.Wants) == 0) {
			rec()
			if _, err := w.Write(raw); err != nil {
				return
			}
			_, _ = io.Copy(w, r)
			return
		}
		if _, err := w.Write(raw); err != nil {
			return
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/stackd/stackd/gen/client"
)

// clientEnv are the environment variables the client commands read.
const clientEnv = `environment:
  STACKD_SERVER   the server, as --server (default http://127.0.0.1:8080)
  STACKD_TOKEN    a bearer ID token, sent as "Authorization: Bearer <token>"
                  (needed where the server has sign-in: --auth oidc)
`

// clientUsage is the help of a client command.
var clientUsage = map[string]string{
	"repos": "usage: stackd repos [flags]\n\nList the repositories of a server.\n",
	"view":  "usage: stackd view REPO [flags]\n\nShow the stacks of a repository.\n",
	"sync":  "usage: stackd sync REPO [flags]\n\nRefresh a repository now and show which refs changed.\n",
}

// clientCmd runs sync, repos and view against a server with the generated
// client. -h prints the command's help, flags and environment to stdout.
func clientCmd(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by run
	server := fs.String("server", envOr("STACKD_SERVER", defaultServer), "the stackd server: a URL, or host:port for http (STACKD_SERVER)")
	asJSON := fs.Bool("json", false, "print the raw JSON answer")
	noWait := false
	if name == "sync" {
		fs.BoolVar(&noWait, "no-wait", false, "return at once (202) instead of waiting for the result")
	}
	// Flags may come before or after the repository argument.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, clientUsage[name]+"\nflags:\n")
				fs.SetOutput(stdout)
				fs.PrintDefaults()
				fmt.Fprint(stdout, "\n"+clientEnv)
				return nil
			}
			return fmt.Errorf("%w: %v (see stackd %s -h)", errUsage, err, name)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	wantArgs := 1
	if name == "repos" {
		wantArgs = 0
	}
	if len(pos) != wantArgs {
		if wantArgs == 0 {
			return fmt.Errorf("%w: stackd %s takes no arguments", errUsage, name)
		}
		return fmt.Errorf("%w: stackd %s REPO", errUsage, name)
	}
	base, err := serverURL(*server)
	if err != nil {
		return fmt.Errorf("%w: --server %q: %v", errUsage, *server, err)
	}
	c, err := client.NewClientWithResponses(base, client.WithRequestEditorFn(func(ctx context.Context, req *http.Request) error {
		if tok := os.Getenv("STACKD_TOKEN"); tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		return nil
	}))
	if err != nil {
		return fmt.Errorf("%w: --server %q: %v", errUsage, *server, err)
	}
	err = runClient(ctx, c, name, pos, *asJSON, noWait, stdout)
	if op, ok := dialError(err); ok {
		return fmt.Errorf("cannot reach stackd at %s (%v): is stackd running? start it with `stackd serve`", base, op.Err)
	}
	return err
}

// defaultServer is where stackd serve listens by default.
const defaultServer = "http://127.0.0.1:8080"

// serverURL makes --server a base URL: host:port (or a bare host) means
// http://host:port; otherwise an http or https URL with a host.
func serverURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", errors.New("want host:port or an http(s) URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("scheme %q: want http or https", u.Scheme)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("want host:port or an http(s) URL such as http://127.0.0.1:8080")
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// dialError returns err's failure to connect (nothing listens, no such
// host), if that is what it is rather than an answer.
func dialError(err error) (*net.OpError, bool) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return op, true
	}
	return nil, false
}

func runClient(ctx context.Context, c *client.ClientWithResponses, name string, pos []string, asJSON, noWait bool, stdout io.Writer) error {
	switch name {
	case "repos":
		resp, err := c.ListReposWithResponse(ctx)
		if err != nil {
			return err
		}
		if resp.JSON200 == nil {
			return answerError(resp.HTTPResponse, resp.Body)
		}
		if asJSON {
			return printJSON(stdout, resp.Body)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tTRUNK\tCURRENT\tVERSION\tSYNC\tREMOTE")
		for _, r := range *resp.JSON200 {
			state := "-"
			if r.SyncStatus != nil {
				state = string(r.SyncStatus.State)
				if r.SyncStatus.LastError != nil {
					state += " (last error: " + *r.SyncStatus.LastError + ")"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Id, r.Kind, r.Trunk, deref(r.CurrentBranch, "-"), viewVersion(r.ViewVersion), state, deref(r.Remote, "-"))
		}
		return tw.Flush()
	case "view":
		resp, err := c.GetViewWithResponse(ctx, pos[0], nil)
		if err != nil {
			return err
		}
		if resp.JSON200 == nil {
			return answerError(resp.HTTPResponse, resp.Body)
		}
		if asJSON {
			return printJSON(stdout, resp.Body)
		}
		printView(stdout, resp.JSON200)
		return nil
	default: // sync
		wait := !noWait
		resp, err := c.SyncRepoWithResponse(ctx, pos[0], &client.SyncRepoParams{Wait: &wait})
		if err != nil {
			return err
		}
		res := resp.JSON200
		if res == nil {
			res = resp.JSON202
		}
		if res == nil {
			return answerError(resp.HTTPResponse, resp.Body)
		}
		if asJSON {
			return printJSON(stdout, resp.Body)
		}
		printSync(stdout, res)
		return nil
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func deref(s *string, def string) string {
	if s == nil || *s == "" {
		return def
	}
	return *s
}

// answerError turns a non-success answer into an error with the problem's
// title and detail.
func answerError(resp *http.Response, body []byte) error {
	var p client.Problem
	if json.Unmarshal(body, &p) == nil && p.Title != "" {
		msg := fmt.Sprintf("%d %s", p.Status, p.Title)
		if p.Detail != nil {
			msg += ": " + *p.Detail
		}
		if p.SyncId != nil {
			msg += " (sync " + *p.SyncId
			if loc := resp.Header.Get("Location"); loc != "" {
				msg += ", " + loc
			}
			msg += ")"
		}
		return errors.New(msg)
	}
	return fmt.Errorf("server answered %s", resp.Status)
}

func printJSON(w io.Writer, body []byte) error {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// viewVersion shows a nullable view version ("-": no view yet).
func viewVersion(v *int64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatInt(*v, 10)
}

// plural is "1 commit", "2 commits", "0 commits".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

func short(sha string) string {
	if len(sha) > 10 {
		return sha[:10]
	}
	return sha
}

func printSync(w io.Writer, r *client.SyncResult) {
	fmt.Fprintf(w, "sync %s of %s: %s (%s, %s)", r.Id, r.RepoID, r.State, r.Mode, r.Trigger)
	if r.DurationMs != nil {
		fmt.Fprintf(w, " in %d ms", *r.DurationMs)
	}
	if r.ViewVersion == nil {
		fmt.Fprintln(w, ", no view yet")
	} else {
		fmt.Fprintf(w, ", view version %d\n", *r.ViewVersion)
	}
	if r.Error != nil {
		fmt.Fprintf(w, "  error: %s\n", *r.Error)
	}
	if len(r.UpdatedRefs) == 0 && r.State == client.SyncResultStateSucceeded {
		fmt.Fprintln(w, "  no refs changed")
	}
	for _, u := range r.UpdatedRefs {
		fmt.Fprintf(w, "  %-8s %s %s -> %s\n", u.Change, u.Ref, short(deref(u.OldSha, "(none)")), short(deref(u.NewSha, "(none)")))
	}
}

func printView(w io.Writer, v *client.RepoView) {
	fmt.Fprintf(w, "%s (%s) trunk %s, view version %d\n", v.Repo.Id, v.Repo.Kind, v.Repo.Trunk, v.Version)
	if len(v.Stacks) == 0 {
		fmt.Fprintln(w, "no stacks")
	}
	for _, st := range v.Stacks {
		title := st.Title
		if title == "" {
			title = st.Root
		}
		fmt.Fprintf(w, "\nstack %s\n", title)
		for _, b := range st.Branches {
			mark := " "
			if b.IsCurrent {
				mark = "*"
			}
			notes := []string{plural(len(b.Commits), "commit", "commits")}
			if b.NeedsRestack {
				notes = append(notes, "needs restack")
			}
			if b.Pr != nil {
				pr := fmt.Sprintf("PR #%d", b.Pr.Number)
				if b.Pr.State != nil {
					pr += " " + *b.Pr.State
				}
				notes = append(notes, pr)
			}
			fmt.Fprintf(w, "%s %s%s  %s  (%s)\n", mark, strings.Repeat("  ", max(b.Depth-1, 0)), b.Name, short(b.Sha), strings.Join(notes, ", "))
		}
	}
}

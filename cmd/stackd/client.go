package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/stackd/stackd/gen/client"
)

// clientCmd runs sync, repos and view against a server with the generated
// client.
func clientCmd(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by run
	server := fs.String("server", envOr("STACKD_SERVER", "http://127.0.0.1:8080"), "stackd server URL (STACKD_SERVER)")
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
				fs.SetOutput(stderr)
				fmt.Fprintf(stderr, "usage: stackd %s [flags]%s\n", name, map[bool]string{true: "", false: " REPO"}[name == "repos"])
				fs.PrintDefaults()
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
	c, err := client.NewClientWithResponses(strings.TrimRight(*server, "/"), client.WithRequestEditorFn(func(ctx context.Context, req *http.Request) error {
		if tok := os.Getenv("STACKD_TOKEN"); tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		return nil
	}))
	if err != nil {
		return fmt.Errorf("%w: --server: %v", errUsage, err)
	}
	switch name {
	case "repos":
		resp, err := c.ListReposWithResponse(ctx)
		if err != nil {
			return err
		}
		if resp.JSON200 == nil {
			return answerError(resp.HTTPResponse, resp.Body)
		}
		if *asJSON {
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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Id, r.Kind, r.Trunk, deref(r.CurrentBranch, "-"), r.ViewVersion, state, deref(r.Remote, "-"))
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
		if *asJSON {
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
		if *asJSON {
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
	fmt.Fprintf(w, ", view version %d\n", r.ViewVersion)
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
			notes := []string{fmt.Sprintf("%d commits", len(b.Commits))}
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

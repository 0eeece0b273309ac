// Command stackd serves the stacked branches of git repositories over an
// OpenAPI-described HTTP API, and talks to such a server.
//
//	stackd serve [flags]        serve the current repository (and mirrors)
//	stackd migrate [flags]      apply the database migrations and exit
//	stackd sync REPO            refresh a repository now and show what changed
//	stackd repos                list the repositories of a server
//	stackd view REPO            show a repository's stacks
//	stackd version              print the version
//
// The client commands (sync, repos, view) take their flags before or after
// the command: stackd --server HOST repos is stackd repos --server HOST.
//
// Every serve flag can also come from STACKD_<FLAG> (dashes become
// underscores: --sync-workers is STACKD_SYNC_WORKERS).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks a command-line mistake (exit code 2).
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	args = hoistClientFlags(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr)
	case "migrate":
		err = migrate(ctx, args[1:], stdout)
	case "sync":
		err = clientCmd(ctx, "sync", args[1:], stdout, stderr)
	case "repos":
		err = clientCmd(ctx, "repos", args[1:], stdout, stderr)
	case "view":
		err = clientCmd(ctx, "view", args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "stackd", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "stackd: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "stackd:", err)
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

// clientCommands are the commands that talk to a server.
var clientCommands = map[string]bool{"sync": true, "repos": true, "view": true}

// clientValueFlags are the client flags that take a value (--server X);
// the others (--json, --no-wait) are booleans.
var clientValueFlags = map[string]bool{"server": true}

// hoistClientFlags moves the flags written before a client command after
// it, so that client flags go before or after the command alike: stackd
// --server HOST repos is stackd repos --server HOST. Anything else is
// left as it is (a flag before serve or migrate is still an unknown
// command).
func hoistClientFlags(args []string) []string {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "-" && args[i] != "--" {
		name := strings.TrimLeft(args[i], "-")
		if clientValueFlags[name] && i+1 < len(args) { // --server X (not --server=X)
			i++
		}
		i++
	}
	if i == 0 || i == len(args) || !clientCommands[args[i]] {
		return args
	}
	out := make([]string, 0, len(args))
	out = append(out, args[i])
	out = append(out, args[:i]...)
	return append(out, args[i+1:]...)
}

const usage = `usage: stackd <command> [flags]

commands:
  serve          serve the current git repository (and configured mirrors)
  migrate        apply the database migrations that are missing, and exit
  sync REPO      refresh a repository now and show what changed
  repos          list the repositories of a server
  view REPO      show a repository's stacks
  version        print the version

Run "stackd <command> -h" for the flags and environment variables of a
command. The client commands (sync, repos, view) take their flags before
or after the command (stackd --server HOST repos, stackd repos --server
HOST) and read STACKD_SERVER and STACKD_TOKEN; serve reads STACKD_<FLAG>
for each of its flags.
`

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

// The generated part of the document lies between these markers; the rest
// of the file (methodology, micro-benchmarks) is written by hand and kept.
const (
	beginMark = "<!-- stackd-bench:begin -->"
	endMark   = "<!-- stackd-bench:end -->"
)

// docSection is the generated part: how, where and when the table was
// measured, then the table.
func (b *bench) docSection(rows []row) string {
	var s strings.Builder
	s.WriteString(beginMark + "\n")
	s.WriteString("<!-- Written by cmd/stackd-bench (make bench); edits between these markers are overwritten. -->\n\n")
	fmt.Fprintf(&s, "- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&s, "- command: `%s`\n", b.opt.command)
	for _, m := range machine(b.opt.stackd) {
		fmt.Fprintf(&s, "- %s\n", m)
	}
	if b.browser != "" {
		fmt.Fprintf(&s, "- browser (dashboard figures): headless %s, 1280x1024\n", b.browser)
	}
	sizes := make([]string, len(b.opt.sizes))
	for i, n := range b.opt.sizes {
		sizes[i] = fmtCount(n)
	}
	runs := fmt.Sprintf("medians of %d runs", b.opt.runs)
	if b.opt.runs == 1 {
		runs = "1 run"
	}
	fmt.Fprintf(&s, "- %s branches; %s; GET loads of %s with %d clients, %d rounds alternating stackd and the plain server (medians)\n",
		strings.Join(sizes, ", "), runs, b.opt.duration, b.opt.clients, b.opt.getRounds)
	if b.opt.smoke {
		s.WriteString("- smoke run: tiny sizes, timings not judged\n")
	}
	s.WriteString("\n")
	s.WriteString(markdown(rows))
	s.WriteString(endMark + "\n")
	return s.String()
}

// writeDoc puts section into the document at path: between the markers
// when it has them, else after its title (a new document gets one).
func writeDoc(path, section string) error {
	raw, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("-out: %w", err)
	}
	doc := string(raw)
	i, j := strings.Index(doc, beginMark), strings.Index(doc, endMark)
	switch {
	case i >= 0 && j > i:
		end := j + len(endMark)
		if end < len(doc) && doc[end] == '\n' {
			end++
		}
		doc = doc[:i] + section + doc[end:]
	case doc == "":
		doc = "# Benchmarks\n\n" + section
	default:
		title, rest, _ := strings.Cut(doc, "\n")
		if !strings.HasPrefix(title, "# ") {
			title, rest = "# Benchmarks", doc
		}
		doc = title + "\n\n" + section + "\n" + strings.TrimLeft(rest, "\n")
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	return nil
}

// The fleet figures (issue 18) have their own generated section, so that a
// run of only the fleet step (or only the others) keeps the other table.
const (
	fleetBeginMark = "<!-- stackd-bench:fleet:begin -->"
	fleetEndMark   = "<!-- stackd-bench:fleet:end -->"
)

// fleetSection is the generated fleet part: how it was measured, then its
// table.
func (b *bench) fleetSection(rows []row) string {
	var s strings.Builder
	f := b.opt.fleet
	s.WriteString(fleetBeginMark + "\n")
	s.WriteString("<!-- Written by cmd/stackd-bench (make bench, step fleet); edits between these markers are overwritten. -->\n\n")
	fmt.Fprintf(&s, "- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&s, "- command: `%s`\n", b.opt.command)
	for _, m := range machine(b.opt.stackd) {
		fmt.Fprintf(&s, "- %s\n", m)
	}
	repos := make([]string, len(f.repos))
	for i, n := range f.repos {
		repos[i] = fmtCount(n)
	}
	streams := make([]string, len(f.streams))
	for i, n := range f.streams {
		streams[i] = fmtCount(n)
	}
	fmt.Fprintf(&s, "- %s repositories of %s branches (stackit metadata on each) served by git daemon on loopback; %d at a time for onboarding and sweeps\n",
		strings.Join(repos, ", "), fmtCount(f.branches), fleetParallel)
	fmt.Fprintf(&s, "- event streams: %s over the first %d repositories of the largest fleet, each stream from its own loopback address; webhook storm: %s signed pushes in %s over the first %d repositories (all of a smaller fleet; debounce %s, max delay %s)\n",
		strings.Join(streams, ", "), fanoutRepos, fmtCount(f.storm.deliveries), f.storm.span, f.storm.repos, f.storm.debounce, f.storm.maxDelay)
	for _, n := range b.fleetNotes {
		fmt.Fprintf(&s, "- %s\n", n)
	}
	if b.opt.smoke {
		s.WriteString("- smoke run: tiny sizes, timings not judged\n")
	}
	s.WriteString("\n")
	s.WriteString(markdown(rows))
	s.WriteString("\n" + fleetSummary(rows, b.opt.smoke) + "\n")
	s.WriteString(fleetEndMark + "\n")
	return s.String()
}

// writeFleetDoc puts the fleet section into the document at path: between
// its markers when it has them, else after the other generated section,
// else at the end.
func writeFleetDoc(path, section string) error {
	raw, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("-out: %w", err)
	}
	doc := string(raw)
	i, j := strings.Index(doc, fleetBeginMark), strings.Index(doc, fleetEndMark)
	k := strings.Index(doc, endMark)
	switch {
	case i >= 0 && j > i:
		end := j + len(fleetEndMark)
		if end < len(doc) && doc[end] == '\n' {
			end++
		}
		doc = doc[:i] + section + doc[end:]
	case doc == "":
		doc = "# Benchmarks\n\n" + section
	case k >= 0:
		end := k + len(endMark)
		if end < len(doc) && doc[end] == '\n' {
			end++
		}
		doc = doc[:end] + "\n" + section + doc[end:]
	default:
		doc = strings.TrimRight(doc, "\n") + "\n\n" + section
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	return nil
}

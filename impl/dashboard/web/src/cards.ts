// The pieces of a repository page: branch cards, PR lines, badges. Every
// string from git or a forge is a text node; a PR is a link only when its URL
// is http(s).

import type { Commit, PullRequest, Repo } from "./client";
import { badge, count, extLink, h, link, timeEl } from "./dom";
import type { BranchRow } from "./model";
import { branchPath } from "./routes";
import { httpURL } from "./safe";

export const sourceLabel: Record<BranchRow["parentSource"], string> = {
  stackit: "stackit",
  graphite: "Graphite",
  ancestry: "ancestry",
  none: "no parent",
};

const sourceTitle: Record<BranchRow["parentSource"], string> = {
  stackit: "The parent comes from stackit metadata",
  graphite: "The parent comes from Graphite metadata",
  ancestry: "The parent comes from the commit ancestry (no metadata)",
  none: "No parent: no metadata and no history shared with trunk",
};

export function headMarker(): HTMLElement {
  return h("span", { class: "head", testid: "head-marker", attrs: { title: "HEAD: the checked-out branch" } }, "HEAD");
}

export function sourceChip(src: BranchRow["parentSource"]): HTMLElement {
  return h("span", { class: `source source-${src}`, testid: "parent-source", attrs: { title: sourceTitle[src] } }, sourceLabel[src]);
}

/** The PR of a branch: number (a link for http(s) URLs only), state, draft flag and title. */
export function prLine(pr: PullRequest | null): HTMLElement {
  if (!pr) return h("div", { class: "pr none" }, h("span", { class: "no-pr", testid: "no-pr" }, "no PR"));
  const url = httpURL(pr.url);
  const num = `#${pr.number}`;
  const state = (pr.state ?? "").toLowerCase();
  return h(
    "div",
    { class: "pr" },
    url ? extLink(url, { class: "pr-num", testid: "pr-link", attrs: { title: `Open PR ${num}` } }, num) : h("span", { class: "pr-num", testid: "pr-number" }, num),
    state ? badge(state, `pr-${/^[a-z]+$/.test(state) ? state : "other"}`, { testid: "pr-state" }) : null,
    pr.isDraft ? badge("draft", "draft", { testid: "pr-draft" }) : null,
    pr.title ? h("span", { class: "pr-title", testid: "pr-title" }, pr.title) : null,
  );
}

export function aheadBehind(ahead: number | null, behind: number | null): HTMLElement | null {
  if (ahead === null && behind === null) return null;
  const a = ahead ?? 0;
  const b = behind ?? 0;
  const label = `${a} ahead, ${b} behind its remote-tracking branch`;
  return h("span", { class: "ahead-behind", testid: "ahead-behind", attrs: { title: label, "aria-label": label } }, `↑${a} ↓${b}`);
}

export function commitLine(c: Commit | null): HTMLElement {
  if (!c) return h("div", { class: "commit-line muted" }, "no commits of its own");
  return h(
    "div",
    { class: "commit-line" },
    h("span", { class: "subject", testid: "commit-subject", attrs: { title: c.subjectTruncated ? "The subject was cut to 512 bytes" : null } }, c.subject),
    h("span", { class: "byline" }, h("span", { class: "author", testid: "commit-author" }, c.author), " · ", timeEl(c.date, { testid: "commit-time" })),
  );
}

/** A branch card. hit: true/false when a filter is on (non-matching cards are dimmed), null without one. */
export function branchCard(repoID: string, b: BranchRow, hit: boolean | null, stackRoot: string | null): HTMLElement {
  const cls = ["card"];
  if (b.isCurrent) cls.push("current");
  if (b.needsRestack) cls.push("restack");
  if (hit === true) cls.push("match");
  if (hit === false) cls.push("dim");
  return h(
    "article",
    { class: cls.join(" "), testid: "branch-card", data: { branch: b.name } },
    h(
      "div",
      { class: "card-head" },
      link(branchPath(repoID, b.name), { class: "branch-name", testid: "branch-name", data: { focusKey: `b:${b.name}` } }, b.name),
      b.isCurrent ? headMarker() : null,
      b.needsRestack ? badge("needs restack", "restack", { testid: "needs-restack" }) : null,
      sourceChip(b.parentSource),
      h("span", { class: "card-stats" }, h("span", { testid: "commit-count" }, count(b.commitCount, "commit", "commits")), aheadBehind(b.ahead, b.behind)),
    ),
    stackRoot !== null ? h("div", { class: "in-stack muted" }, "in stack ", link(branchPath(repoID, stackRoot), null, stackRoot)) : null,
    prLine(b.pr),
    commitLine(b.newest),
  );
}

/** The kind of a repository, as shown. */
export function kindLabel(r: Repo): string {
  return r.kind === "local" ? "working repository" : "mirror";
}

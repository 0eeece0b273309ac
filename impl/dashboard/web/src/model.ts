// The repository page's model: a slim copy of the view (what the cards show,
// no more: a branch keeps its newest commit and its commit count, not all 50
// commits), with each stack's status and last activity and each branch's
// filter text. Pure: no DOM, so that it is tested with node --test.

import type { Branch, Commit, PullRequest, RepoView, Stack } from "./client";
import { parseTime } from "./time";

export type StackStatus = "needs-restack" | "no-pr" | "draft" | "ready";

export const statusLabel: Record<StackStatus, string> = {
  "needs-restack": "needs restack",
  "no-pr": "branches without PR",
  draft: "draft PRs",
  ready: "ready",
};

export interface BranchRow {
  name: string;
  sha: string;
  parent: string | null;
  parentSource: Branch["parentSource"];
  children: string[];
  depth: number;
  isCurrent: boolean;
  needsRestack: boolean;
  ahead: number | null;
  behind: number | null;
  pr: PullRequest | null;
  commitCount: number;
  newest: Commit | null;
  /** The newest commit's time (ms), NaN without commits. */
  activity: number;
  /** The newest commit's author, "" without commits. */
  author: string;
  /** Lower-case text the filter searches: name, PR title, authors. */
  hay: string;
  stackKey: string;
  /** The filter run that last matched this branch (see filterStacks). */
  hitRun: number;
}

export interface StackRow {
  /** Unique within the view: the stack id (stackit) or the root name. */
  key: string;
  id: string;
  root: string;
  title: string;
  description: string;
  branches: BranchRow[];
  /** The newest commit time of any branch (ms); -Infinity without commits. */
  activity: number;
  status: StackStatus;
  restackCount: number;
  noPRCount: number;
  draftCount: number;
}

export interface Model {
  repoID: string;
  trunk: string;
  currentBranch: string | null;
  version: number;
  builtAt: string;
  recentlyMerged: Commit[];
  /** Sorted by last activity, newest first. */
  stacks: StackRow[];
  branchCount: number;
  restackCount: number;
  byName: Map<string, BranchRow>;
  stackByKey: Map<string, StackRow>;
}

/** The model of a view; stacks sorted by last activity, newest first (then by root name). */
export function buildModel(view: RepoView): Model {
  const stacks: StackRow[] = [];
  const byName = new Map<string, BranchRow>();
  const seen = new Set<string>();
  let branchCount = 0;
  let restackCount = 0;
  for (const s of view.stacks) {
    let key = s.id || s.root;
    if (seen.has(key)) key = `${key}\u0000${s.root}`;
    seen.add(key);
    const row = stackRow(s, key);
    for (const b of row.branches) byName.set(b.name, b);
    branchCount += row.branches.length;
    restackCount += row.restackCount;
    stacks.push(row);
  }
  stacks.sort(byActivity);
  const stackByKey = new Map(stacks.map((s) => [s.key, s]));
  return {
    repoID: view.repo.id,
    trunk: view.repo.trunk,
    currentBranch: view.repo.currentBranch ?? null,
    version: view.version,
    builtAt: view.builtAt,
    recentlyMerged: view.recentlyMerged.slice(0, 20),
    stacks,
    branchCount,
    restackCount,
    byName,
    stackByKey,
  };
}

function byActivity(a: StackRow, b: StackRow): number {
  if (a.activity !== b.activity) return b.activity - a.activity;
  return a.root < b.root ? -1 : a.root > b.root ? 1 : 0;
}

function stackRow(s: Stack, key: string): StackRow {
  const branches = s.branches.map((b) => branchRow(b, key));
  let activity = -Infinity;
  let restack = 0;
  let noPR = 0;
  let draft = 0;
  for (const b of branches) {
    if (b.activity > activity) activity = b.activity;
    if (b.needsRestack) restack++;
    if (b.pr === null) noPR++;
    else if (b.pr.isDraft) draft++;
  }
  return {
    key,
    id: s.id,
    root: s.root,
    title: s.title,
    description: s.description ?? "",
    branches,
    activity,
    status: stackStatus(restack, noPR, draft),
    restackCount: restack,
    noPRCount: noPR,
    draftCount: draft,
  };
}

/** One look at a stack: the first of needs restack, branches without PR, draft PRs; else ready. */
export function stackStatus(restack: number, noPR: number, draft: number): StackStatus {
  if (restack > 0) return "needs-restack";
  if (noPR > 0) return "no-pr";
  if (draft > 0) return "draft";
  return "ready";
}

function branchRow(b: Branch, stackKey: string): BranchRow {
  const newest = b.commits[0] ?? null;
  const pr = b.pr ?? null;
  const authors = new Set<string>();
  for (const c of b.commits) authors.add(c.author);
  const hay = [b.name, pr?.title ?? "", ...authors].join("\n").toLowerCase();
  return {
    name: b.name,
    sha: b.sha,
    parent: b.parent ?? null,
    parentSource: b.parentSource,
    children: b.children,
    depth: b.depth,
    isCurrent: b.isCurrent,
    needsRestack: b.needsRestack,
    ahead: b.ahead ?? null,
    behind: b.behind ?? null,
    pr,
    commitCount: b.commits.length,
    newest,
    activity: newest ? parseTime(newest.date) : NaN,
    author: newest?.author ?? "",
    hay,
    stackKey,
    hitRun: 0,
  };
}

/** A parsed filter: words that must all match. */
export interface Query {
  terms: Term[];
}

interface Term {
  text: string;
  /** The PR number of "#123" or "123". */
  pr: number | null;
  /** "#123": only the PR number matches. */
  prOnly: boolean;
}

/** Parses the filter box: space-separated words, each matched case-insensitively. */
export function parseQuery(s: string): Query {
  const terms: Term[] = [];
  for (const w of s.trim().toLowerCase().split(/\s+/)) {
    if (!w) continue;
    const m = /^#?(\d{1,9})$/.exec(w);
    terms.push({ text: w, pr: m ? Number(m[1]) : null, prOnly: w.startsWith("#") && m !== null });
  }
  return { terms };
}

/** Whether a branch matches every word: in its name, PR title or authors, or as its PR number. */
export function matches(b: BranchRow, q: Query): boolean {
  for (const t of q.terms) {
    const prHit = t.pr !== null && b.pr !== null && b.pr.number === t.pr;
    if (prHit) continue;
    if (t.prOnly) return false;
    if (!b.hay.includes(t.text)) return false;
  }
  return true;
}

/** The result of a filter: the stacks with a matching branch, and which branches match. */
export interface Filtered {
  stacks: StackRow[];
  /** null without a filter (everything shows, nothing is marked). */
  hit: ((b: BranchRow) => boolean) | null;
  hitCount: number;
}

let filterRun = 0;

/**
 * The stacks with at least one matching branch. Matches are stamped on the
 * rows (no set of 50,000 names per keystroke); hit tells them apart until the
 * next filter run.
 */
export function filterStacks(stacks: StackRow[], q: Query): Filtered {
  if (q.terms.length === 0) return { stacks, hit: null, hitCount: 0 };
  const run = ++filterRun;
  const out: StackRow[] = [];
  let hitCount = 0;
  for (const s of stacks) {
    let any = false;
    for (const b of s.branches) {
      if (matches(b, q)) {
        b.hitRun = run;
        hitCount++;
        any = true;
      }
    }
    if (any) out.push(s);
  }
  return { stacks: out, hit: (b) => b.hitRun === run, hitCount };
}

export interface AuthorGroup {
  author: string;
  /** Newest first. */
  branches: BranchRow[];
  activity: number;
}

/** Groups (matching) branches by the author of their newest commit; groups by last activity. */
export function groupByAuthor(stacks: StackRow[], hit: ((b: BranchRow) => boolean) | null): AuthorGroup[] {
  const groups = new Map<string, AuthorGroup>();
  for (const s of stacks) {
    for (const b of s.branches) {
      if (hit !== null && !hit(b)) continue;
      let g = groups.get(b.author);
      if (!g) {
        g = { author: b.author, branches: [], activity: -Infinity };
        groups.set(b.author, g);
      }
      g.branches.push(b);
      if (b.activity > g.activity) g.activity = b.activity;
    }
  }
  const out = [...groups.values()];
  for (const g of out) g.branches.sort((x, y) => (y.activity || 0) - (x.activity || 0) || cmp(x.name, y.name));
  out.sort((a, b) => b.activity - a.activity || cmp(a.author, b.author));
  return out;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Moves HEAD in the model (branch_switched): from loses the marker, to gets it. */
export function switchHead(m: Model, from: string, to: string): void {
  for (const b of m.byName.values()) if (b.isCurrent && b.name !== to) b.isCurrent = false;
  const f = m.byName.get(from);
  if (f) f.isCurrent = false;
  const t = m.byName.get(to);
  if (t) t.isCurrent = true;
  m.currentBranch = to === "" ? null : to;
}

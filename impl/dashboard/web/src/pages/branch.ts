// The branch page: parent and children, the PR, the commits (short SHAs that
// copy the full one), and the diff against the parent, loaded on demand and
// rendered per file (a large diff is cut, with a notice).

import { aheadBehind, headMarker, prLine, sourceChip } from "../cards";
import { call, callText, diffURL, type Branch } from "../client";
import type { Ctx } from "../ctx";
import { badge, count, errorBox, h, isAbort, link, loading, replace, shaButton, timeEl, num } from "../dom";
import { budgetLines, displayPath, parsePatch, type DiffFile, type Hunk } from "../diff";
import { branchPath, repoPath, reposPath } from "../routes";

/** At most this many diff lines are rendered; the rest is cut with a notice. */
const maxDiffLines = 4000;
/** A longer line is cut when rendered. */
const maxLineChars = 2000;

export function branchPage(root: HTMLElement, repoID: string, branch: string, ctx: Ctx): void {
  ctx.setTrail(branch, [{ label: "Repositories", href: reposPath() }, { label: repoID, href: repoPath(repoID) }, { label: branch }]);
  const body = h("div", null, loading("the branch"));
  replace(root, h("div", { class: "branch-head" }, h("h1", { attrs: { tabindex: -1 }, testid: "branch-title" }, branch)), body);
  let diffButton: HTMLButtonElement | null = null;
  let parentName: string | null = null;

  ctx.setShortcuts([
    { keys: "d", description: "Show the diff against the parent", run: () => diffButton?.click() },
    { keys: "p", description: "Go to the parent branch", run: () => parentName && ctx.navigate(branchPath(repoID, parentName)) },
    { keys: "u", description: "Up: the repository", run: () => ctx.navigate(repoPath(repoID)) },
  ]);

  async function load(): Promise<void> {
    try {
      const a = await call("get", "/api/v1/repos/{repoID}/branches/{branch}", { path: { repoID, branch }, signal: ctx.signal });
      if (a.data) render(a.data);
    } catch (e) {
      if (isAbort(e)) return;
      replace(body, errorBox(e, () => {
        replace(body, loading("the branch"));
        void load();
      }));
    }
  }

  function render(b: Branch): void {
    const title = root.querySelector("h1");
    if (title && b.isCurrent) title.appendChild(headMarker());
    parentName = b.parent ?? null;
    const isTrunk = b.depth === 0 && !b.parent;
    const diffBox = h("div", { class: "diff", testid: "diff" });
    if (!isTrunk && b.parent) {
      diffButton = h("button", { attrs: { type: "button" }, testid: "load-diff" }, "Show the diff");
      diffButton.addEventListener("click", () => loadDiff(diffBox));
    }
    replace(
      body,
      h(
        "dl",
        { class: "facts", testid: "branch-facts" },
        h(
          "div",
          null,
          h("dt", null, "Parent"),
          h("dd", null, b.parent ? [link(branchPath(repoID, b.parent), { testid: "parent-link" }, b.parent), " "] : isTrunk ? "none (trunk) " : "none ", sourceChip(b.parentSource)),
        ),
        h(
          "div",
          null,
          h("dt", null, "Children"),
          h(
            "dd",
            { testid: "children" },
            b.children.length === 0
              ? "none"
              : h("ul", { class: "inline-list" }, b.children.map((c) => h("li", null, link(branchPath(repoID, c), { testid: "child-link" }, c)))),
          ),
        ),
        h("div", null, h("dt", null, "Tip"), h("dd", null, shaButton(b.sha))),
        h(
          "div",
          null,
          h("dt", null, "State"),
          h(
            "dd",
            null,
            b.needsRestack ? badge("needs restack", "restack", { testid: "needs-restack" }) : badge("up to date with its parent", "ok"),
            " ",
            aheadBehind(b.ahead ?? null, b.behind ?? null),
          ),
        ),
        h("div", null, h("dt", null, "Pull request"), h("dd", null, prLine(b.pr ?? null))),
      ),
      h(
        "section",
        { class: "commits" },
        h("h2", null, "Commits ", h("span", { class: "muted" }, `(${count(b.commits.length, "commit", "commits")}${b.commits.length >= 50 ? ", the newest 50" : ""})`)),
        b.commits.length === 0
          ? h("p", { class: "muted" }, isTrunk ? "Trunk's history is on the repository page." : "No commits of its own above its parent.")
          : h(
              "ol",
              { class: "commit-list", testid: "commits" },
              b.commits.map((c) =>
                h(
                  "li",
                  { testid: "commit" },
                  shaButton(c.sha),
                  h("span", { class: "subject", testid: "commit-subject" }, c.subject),
                  h("span", { class: "byline" }, h("span", { class: "author", testid: "commit-author" }, c.author), " · ", timeEl(c.date)),
                ),
              ),
            ),
      ),
      h(
        "section",
        { class: "diff-section" },
        h("h2", null, b.parent ? ["Changes against ", h("code", null, b.parent)] : "Changes"),
        isTrunk || !b.parent ? h("p", { class: "muted" }, "This branch has no parent to compare with.") : diffButton,
        diffBox,
      ),
    );
  }

  function loadDiff(box: HTMLElement): void {
    if (diffButton) diffButton.disabled = true;
    replace(box, loading("the diff"));
    callText("/api/v1/repos/{repoID}/branches/{branch}/diff", { path: { repoID, branch }, signal: ctx.signal }, "text/x-patch")
      .then((a) => {
        if (diffButton) diffButton.hidden = true;
        renderDiff(box, typeof a.data === "string" ? a.data : "");
      })
      .catch((e: unknown) => {
        if (isAbort(e)) return;
        if (diffButton) diffButton.disabled = false;
        replace(box, errorBox(e, () => loadDiff(box)));
      });
  }

  function renderDiff(box: HTMLElement, patch: string): void {
    const files = parsePatch(patch);
    if (files.length === 0) {
      replace(box, h("p", { class: "muted", testid: "diff-empty" }, "No changes against the parent."));
      return;
    }
    const budget = budgetLines(files, maxDiffLines);
    let added = 0;
    let removed = 0;
    for (const f of files) {
      added += f.added;
      removed += f.removed;
    }
    const parts: HTMLElement[] = [
      h("p", { class: "diff-stats", testid: "diff-stats" }, `${count(files.length, "file", "files")} changed, `, h("span", { class: "plus" }, `+${added}`), " ", h("span", { class: "minus" }, `−${removed}`)),
    ];
    if (budget.cut) {
      parts.push(
        h(
          "p",
          { class: "notice", testid: "diff-cut", attrs: { role: "note" } },
          `This diff is large: ${num(budget.shownLines)} of its ${num(budget.totalLines)} lines are shown. `,
          h("a", { attrs: { href: diffURL(repoID, branch) } }, "Open the whole patch"),
          ".",
        ),
      );
    }
    files.forEach((f, i) => parts.push(renderFile(f, budget.shown[i] ?? 0)));
    replace(box, ...parts);
  }

  void load();
}

function renderFile(f: DiffFile, budget: number): HTMLElement {
  const total = f.hunks.reduce((a, hk) => a + 1 + hk.lines.length, 0);
  const details = h(
    "details",
    { class: `diff-file status-${f.status}`, testid: "diff-file", attrs: { open: true }, data: { path: f.newPath ?? f.oldPath ?? "" } },
    h(
      "summary",
      null,
      h("code", { class: "path", testid: "diff-path" }, displayPath(f)),
      " ",
      badge(f.status, `file-${f.status}`),
      " ",
      h("span", { class: "plus" }, `+${f.added}`),
      " ",
      h("span", { class: "minus" }, `−${f.removed}`),
    ),
  );
  if (f.notShown) details.appendChild(h("p", { class: "notice", testid: "diff-not-shown" }, `Not shown: ${f.notShown.replace(/^diff not shown, /, "")}`));
  else if (f.binary) details.appendChild(h("p", { class: "muted" }, "Binary file, not shown."));
  if (f.hunks.length === 0) {
    if (!f.notShown && !f.binary) details.appendChild(h("p", { class: "muted" }, f.status === "renamed" ? "Renamed without changes." : "No content changes (mode only)."));
    return details;
  }
  const table = h("table", { class: "diff-lines" });
  let left = budget;
  for (const hk of f.hunks) {
    if (left <= 0) break;
    left = renderHunk(table, hk, left);
  }
  details.appendChild(h("div", { class: "diff-scroll" }, table));
  if (budget < total) details.appendChild(h("p", { class: "notice", testid: "diff-file-cut" }, `${num((total - budget))} more lines of this file are not shown.`));
  return details;
}

function renderHunk(table: HTMLTableElement, hk: Hunk, left: number): number {
  const tbody = h("tbody");
  tbody.appendChild(h("tr", { class: "hunk" }, h("td", { attrs: { colspan: 3 } }, hk.header)));
  left--;
  for (const l of hk.lines) {
    if (left <= 0) break;
    left--;
    const sign = l.kind === "add" ? "+" : l.kind === "del" ? "-" : l.kind === "meta" ? "" : " ";
    const text = l.text.length > maxLineChars ? `${l.text.slice(0, maxLineChars)}… (line cut)` : l.text;
    tbody.appendChild(
      h(
        "tr",
        { class: `line ${l.kind}`, data: { kind: l.kind } },
        h("td", { class: "ln", attrs: { "aria-hidden": "true" } }, l.oldNo === null ? "" : String(l.oldNo)),
        h("td", { class: "ln", attrs: { "aria-hidden": "true" } }, l.newNo === null ? "" : String(l.newNo)),
        h(
          "td",
          { class: "code" },
          h("span", { class: "sign", attrs: { "aria-hidden": "true" } }, sign),
          l.kind === "add" ? h("ins", null, text) : l.kind === "del" ? h("del", null, text) : text,
        ),
      ),
    );
  }
  table.appendChild(tbody);
  return left;
}

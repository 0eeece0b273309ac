// The sync history of a repository, newest first, one page at a time (the
// Link header's rel="next"): trigger, mode, outcome, duration and changes.

import { callURL, call, type SyncResult } from "../client";
import type { Ctx } from "../ctx";
import { badge, errorBox, h, isAbort, link, loading, refreshTimes, replace, timeEl, num } from "../dom";
import { repoPath, reposPath } from "../routes";
import { nextLink } from "../safe";
import { refLists } from "../sync";
import { formatDuration } from "../time";

/** The page size: ?limit= of the page's URL (1-1000), else 50. */
function pageSize(): number {
  const n = Number(new URLSearchParams(location.search).get("limit"));
  return Number.isInteger(n) && n >= 1 && n <= 1000 ? n : 50;
}

export function syncsPage(root: HTMLElement, repoID: string, ctx: Ctx): void {
  ctx.setTrail(`Sync history of ${repoID}`, [{ label: "Repositories", href: reposPath() }, { label: repoID, href: repoPath(repoID) }, { label: "Sync history" }]);
  ctx.setShortcuts([{ keys: "u", description: "Up: the repository", run: () => ctx.navigate(repoPath(repoID)) }]);
  const tbody = h("tbody", { testid: "sync-rows" });
  const table = h(
    "table",
    { class: "syncs", testid: "sync-table" },
    h("caption", { class: "visually-hidden" }, `Syncs of ${repoID}, newest first`),
    h(
      "thead",
      null,
      h(
        "tr",
        null,
        ["Queued", "Trigger", "Mode", "Outcome", "Duration", "Changes"].map((t) => h("th", { attrs: { scope: "col" } }, t)),
      ),
    ),
    tbody,
  );
  const more = h("div", { class: "more" });
  const body = h("div", null, loading("the sync history"));
  replace(
    root,
    h("h1", { attrs: { tabindex: -1 } }, "Sync history ", h("span", { class: "muted" }, "of "), link(repoPath(repoID), null, repoID)),
    body,
  );

  let next: string | null = null;
  let rows = 0;

  function add(list: SyncResult[]): void {
    for (const r of list) {
      tbody.appendChild(row(r));
      rows++;
    }
  }

  function row(r: SyncResult): HTMLElement {
    const refs = refLists(repoID, r);
    const outcome =
      r.state === "failed"
        ? [badge("failed", "sync-failed", { testid: "sync-outcome" }), r.error ? h("div", { class: "sync-error-text" }, r.error) : null]
        : [badge(r.state, `sync-${r.state}`, { testid: "sync-outcome" })];
    return h(
      "tr",
      { testid: "sync-row", data: { state: r.state, id: r.id } },
      h("td", { data: { label: "Queued" } }, timeEl(r.queuedAt)),
      h("td", { testid: "sync-trigger", data: { label: "Trigger" } }, r.trigger),
      h("td", { testid: "sync-mode", data: { label: "Mode" } }, r.mode),
      h("td", { data: { label: "Outcome" } }, outcome),
      h("td", { testid: "sync-duration", data: { label: "Duration" } }, formatDuration(r.durationMs)),
      h(
        "td",
        { data: { label: "Changes" } },
        r.updatedRefsTotal === 0
          ? h("span", { class: "muted" }, "none")
          : refs
            ? h("details", null, h("summary", null, `${num(r.updatedRefsTotal)} ref${r.updatedRefsTotal === 1 ? "" : "s"}`), refs)
            : `${num(r.updatedRefsTotal)} refs`,
      ),
    );
  }

  function renderMore(): void {
    if (next === null) {
      replace(more, rows > 0 ? h("p", { class: "muted", testid: "history-end" }, "That is the whole stored history.") : null);
      return;
    }
    const b = h("button", { attrs: { type: "button" }, testid: "load-older" }, "Load older syncs");
    b.addEventListener("click", () => void loadNext(b));
    replace(more, b);
  }

  async function loadFirst(): Promise<void> {
    try {
      const a = await call("get", "/api/v1/repos/{repoID}/syncs", { path: { repoID }, query: { limit: pageSize() }, signal: ctx.signal });
      const list = a.data ?? [];
      next = nextLink(a.headers.get("Link"), location.origin);
      if (list.length === 0) {
        replace(body, h("p", { class: "empty", testid: "no-syncs" }, "No syncs recorded yet."));
        return;
      }
      add(list);
      replace(body, h("div", { class: "table-scroll" }, table), more);
      renderMore();
    } catch (e) {
      if (isAbort(e)) return;
      replace(body, errorBox(e, () => {
        replace(body, loading("the sync history"));
        void loadFirst();
      }));
    }
  }

  async function loadNext(button: HTMLButtonElement): Promise<void> {
    if (next === null) return;
    button.disabled = true;
    replace(button, "Loading…");
    try {
      const a = await callURL<SyncResult[]>("get", next, { signal: ctx.signal });
      next = nextLink(a.headers.get("Link"), location.origin);
      const firstNew = tbody.children.length;
      add(a.data ?? []);
      renderMore();
      // Keep the keyboard where it was: on the first new row's first link, else the list.
      const focusTarget = tbody.children[firstNew]?.querySelector<HTMLElement>("summary, a, button");
      focusTarget?.focus();
    } catch (e) {
      if (isAbort(e)) return;
      replace(more, errorBox(e, () => renderMore()));
    }
  }

  const timer = window.setInterval(() => refreshTimes(root), 30_000);
  ctx.signal.addEventListener("abort", () => window.clearInterval(timer));
  void loadFirst();
}

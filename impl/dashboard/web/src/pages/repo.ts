// The repository page: trunk with its recently merged commits, every stack as
// a tree from root to leaves (or the branches grouped by author), a filter,
// the Sync button and the live event stream.

import { cachedModel, storeModel } from "../cache";
import { branchCard, headMarker, kindLabel } from "../cards";
import { ApiError, call, type Repo, type RepoView } from "../client";
import { measure, type Ctx } from "../ctx";
import { badge, count, errorBox, h, isAbort, link, loading, refreshTimes, replace, shaButton, timeEl, num } from "../dom";
import { focusKey, LazyList, restoreFocus, type Block } from "../lazylist";
import { Live } from "../live";
import {
  buildModel,
  filterStacks,
  groupByAuthor,
  parseQuery,
  statusLabel,
  switchHead,
  type AuthorGroup,
  type BranchRow,
  type Model,
  type StackRow,
} from "../model";
import { branchPath, reposPath, syncsPath } from "../routes";
import { SyncControl } from "../sync";

// Estimated heights (px) of a block's parts before it was ever rendered.
const headHeight = 64;
const cardHeight = 96;

type GroupBy = "stack" | "author";

/** The sync state of a repository in one line: state, last success, and the last failure's error. */
export function syncStateLine(r: Repo): HTMLElement {
  const s = r.syncStatus;
  if (!s) return h("span", { testid: "sync-state" }, "unknown");
  const parts: Array<Node | string> = [];
  const state = s.state === "idle" ? "idle" : s.state === "running" ? "syncing" : "cloning";
  parts.push(badge(state, `sync-${s.state}`, { testid: "sync-state" }));
  if (s.lastSuccessAt) parts.push(" last success ", timeEl(s.lastSuccessAt, { testid: "last-success" }));
  else parts.push(" never synced");
  const line = h("span", { class: "sync-line" }, parts);
  if (s.consecutiveFailures > 0) {
    line.appendChild(
      h(
        "span",
        { class: "sync-failure", testid: "sync-error" },
        h("strong", null, s.consecutiveFailures === 1 ? "Last sync failed" : `Last ${s.consecutiveFailures} syncs failed`),
        s.lastAttemptAt ? [" (", timeEl(s.lastAttemptAt), ")"] : null,
        s.lastError ? [": ", s.lastError] : null,
      ),
    );
  }
  return line;
}

export function repoPage(root: HTMLElement, repoID: string, ctx: Ctx): void {
  ctx.setTrail(repoID, [{ label: "Repositories", href: reposPath() }, { label: repoID }]);
  const params = new URLSearchParams(location.search);
  let query = params.get("q") ?? "";
  let groupBy: GroupBy = params.get("by") === "author" ? "author" : "stack";
  const collapsed = new Set<string>();
  let model: Model | null = null;
  let etag: string | null = null;
  let repo: Repo | null = null;
  let firstShown = false;

  // Header: facts, sync state and controls, live indicator.
  const facts = h("dl", { class: "facts", testid: "repo-facts" });
  const syncState = h("div", { class: "sync-state", testid: "sync-status" });
  const refreshError = h("div", { class: "refresh-error", testid: "refresh-error" });
  refreshError.hidden = true;
  const sync = ctx.canMutate ? new SyncControl(repoID, ctx.signal, () => void loadRepo()) : null;
  const live = new Live(repoID, {
    connected: (d) => {
      // Versions start again at a server restart: any difference reloads (a 304 when it is the same view).
      if (model && d.viewVersion !== model.version) void refetch(performance.now());
    },
    resync: () => {
      void refetch(performance.now());
      void loadRepo();
    },
    viewUpdated: (d) => {
      if (model && d.version === model.version) return;
      void refetch(performance.now());
    },
    branchSwitched: (d) => {
      if (!model) return;
      switchHead(model, d.from, d.to);
      renderFacts();
      renderTrunk();
      list.refresh();
    },
    repoRemoved: () => {
      ctx.flash(`The repository ${repoID} was removed: it is no longer served.`);
      ctx.navigate(reposPath());
    },
    syncStarted: (r) => {
      sync?.onStarted(r);
      void loadRepo();
    },
    syncFinished: () => void loadRepo(),
    syncFailed: () => void loadRepo(),
    gaveUp: () => {
      // The stream was refused: a removed repository answers 404.
      call("get", "/api/v1/repos/{repoID}", { path: { repoID }, signal: ctx.signal }).catch((e: unknown) => {
        if (e instanceof ApiError && e.status === 404) {
          live.close();
          ctx.flash(`The repository ${repoID} is no longer served.`);
          ctx.navigate(reposPath());
        }
      });
    },
  });
  ctx.signal.addEventListener("abort", () => live.close());

  const controls = h(
    "div",
    { class: "repo-controls" },
    sync ? sync.button : null,
    link(syncsPath(repoID), { class: "button-link", testid: "history-link" }, "Sync history"),
    live.indicator,
  );

  // Trunk, toolbar, list.
  const trunkEl = h("details", { class: "trunk", testid: "trunk", attrs: { open: true } });
  const filter = h("input", {
    class: "filter",
    testid: "filter",
    attrs: {
      type: "search",
      placeholder: "Filter: branch, #PR, author, title",
      "aria-label": "Filter branches by name, PR number, author or PR title",
      autocomplete: "off",
      spellcheck: "false",
    },
  });
  filter.value = query;
  const group = h(
    "select",
    { testid: "group-by", attrs: { "aria-label": "Group branches" } },
    h("option", { attrs: { value: "stack" } }, "By stack"),
    h("option", { attrs: { value: "author" } }, "By author"),
  );
  group.value = groupBy;
  const expandAll = h("button", { attrs: { type: "button" }, testid: "expand-all" }, "Expand all");
  const collapseAll = h("button", { attrs: { type: "button" }, testid: "collapse-all" }, "Collapse all");
  const summary = h("p", { class: "summary", testid: "summary", attrs: { role: "status", "aria-live": "polite" } });
  const toolbar = h(
    "div",
    { class: "toolbar", testid: "toolbar" },
    filter,
    group,
    h("span", { class: "toolbar-buttons" }, expandAll, collapseAll),
    summary,
  );
  const topSentinel = h("div", { class: "sentinel" });
  const listEl = h("div", { class: "stack-list", testid: "stack-list" });
  const emptyEl = h("div", { class: "empty-wrap" });
  const list = new LazyList(listEl, { maxWeight: 60, margin: 1200, onRender: (el) => refreshTimes(el) });
  ctx.signal.addEventListener("abort", () => list.destroy());
  const content = h("div", { class: "repo-content" }, loading("the stacks"));

  replace(
    root,
    h("div", { class: "repo-head" }, h("h1", { attrs: { tabindex: -1 } }, repoID), controls),
    facts,
    syncState,
    sync ? sync.panel : null,
    refreshError,
    content,
  );

  function renderFacts(): void {
    const focus = facts.contains(document.activeElement) ? focusKey() : null;
    const r = repo;
    const m = model;
    const current = m ? m.currentBranch : (r?.currentBranch ?? null);
    replace(
      facts,
      r ? h("div", null, h("dt", null, "Kind"), h("dd", { testid: "repo-kind" }, kindLabel(r))) : null,
      h("div", null, h("dt", null, "Trunk"), h("dd", { testid: "repo-trunk" }, h("code", null, m?.trunk ?? r?.trunk ?? "…"))),
      r ? h("div", null, h("dt", null, "Remote"), h("dd", { testid: "repo-remote" }, r.remote ? h("code", null, r.remote) : "none")) : null,
      r?.kind === "local" || current
        ? h(
            "div",
            null,
            h("dt", null, "HEAD"),
            h("dd", { testid: "repo-head" }, current ? link(branchPath(repoID, current), { testid: "current-branch", data: { focusKey: "head" } }, current) : "detached"),
          )
        : null,
      m ? h("div", null, h("dt", null, "View"), h("dd", { testid: "view-version" }, `version ${m.version}, built `, timeEl(m.builtAt))) : null,
    );
    if (r) replace(syncState, syncStateLine(r));
    restoreFocus(facts, focus);
  }

  function renderTrunk(): void {
    const m = model;
    if (!m) return;
    const merged = m.recentlyMerged;
    replace(
      trunkEl,
      h(
        "summary",
        null,
        h("h2", null, "Trunk ", h("code", { testid: "trunk-name" }, m.trunk)),
        m.currentBranch === m.trunk ? headMarker() : null,
        h("span", { class: "muted" }, merged.length > 0 ? ` ${count(merged.length, "recent commit", "recent commits")}` : " no commits"),
      ),
      merged.length === 0
        ? null
        : h(
            "ol",
            { class: "merged" },
            merged.map((c) =>
              h(
                "li",
                { testid: "merged-commit" },
                shaButton(c.sha),
                h("span", { class: "subject" }, c.subject),
                h("span", { class: "byline" }, h("span", { class: "author" }, c.author), " · ", timeEl(c.date)),
              ),
            ),
          ),
    );
  }

  function stackBlock(s: StackRow, hits: ((b: BranchRow) => boolean) | null): Block {
    const folded = collapsed.has(s.key);
    return {
      key: `s:${s.key}`,
      weight: folded ? 1 : s.branches.length + 1,
      estimate: headHeight + (folded ? 0 : s.branches.length * cardHeight),
      render: () => renderStack(s, hits),
    };
  }

  function renderStack(s: StackRow, hits: ((b: BranchRow) => boolean) | null): HTMLElement {
    const folded = collapsed.has(s.key);
    const toggle = h(
      "button",
      {
        class: "toggle",
        testid: "stack-toggle",
        attrs: { type: "button", "aria-expanded": folded ? "false" : "true", "aria-label": `${folded ? "Expand" : "Collapse"} the stack ${s.title}` },
        data: { focusKey: `t:${s.key}` },
      },
      folded ? "▸" : "▾",
    );
    toggle.addEventListener("click", () => toggleStack(s.key));
    const head = h(
      "header",
      { class: "stack-head" },
      toggle,
      h("h3", { class: "stack-title", testid: "stack-title" }, link(branchPath(repoID, s.root), null, s.title || s.root)),
      badge(statusLabel[s.status], `status-${s.status}`, { testid: "stack-status", data: { status: s.status } }),
      h("span", { class: "muted stack-meta" }, count(s.branches.length, "branch", "branches"), Number.isFinite(s.activity) ? [" · ", timeEl(new Date(s.activity).toISOString())] : null),
    );
    const section = h("section", { class: `stack${folded ? " folded" : ""}`, testid: "stack", data: { status: s.status, root: s.root } }, head);
    if (s.description) section.appendChild(h("p", { class: "stack-desc" }, s.description));
    if (!folded) section.appendChild(tree(s, hits));
    return section;
  }

  // tree nests the stack's branches (depth-first, root first) as lists.
  function tree(s: StackRow, hits: ((b: BranchRow) => boolean) | null): HTMLElement {
    const top = h("ul", { class: "tree", testid: "stack-tree" });
    const rootDepth = s.branches[0]?.depth ?? 1;
    const lis: HTMLLIElement[] = [];
    for (const b of s.branches) {
      let rel = Math.max(0, b.depth - rootDepth);
      if (rel > lis.length) rel = lis.length;
      let parentUl = top;
      if (rel > 0) {
        const parentLi = lis[rel - 1];
        if (parentLi) {
          let ul = parentLi.lastElementChild;
          if (!(ul instanceof HTMLUListElement)) {
            ul = h("ul", { class: "tree" });
            parentLi.appendChild(ul);
          }
          parentUl = ul as HTMLUListElement;
        }
      }
      const li = h("li", { class: "node" }, branchCard(repoID, b, hits ? hits(b) : null, null));
      parentUl.appendChild(li);
      lis[rel] = li;
      lis.length = rel + 1;
    }
    return top;
  }

  function authorBlocks(groups: AuthorGroup[]): Block[] {
    const out: Block[] = [];
    const per = 50;
    for (const g of groups) {
      for (let i = 0; i < g.branches.length; i += per) {
        const part = g.branches.slice(i, i + per);
        const first = i === 0;
        out.push({
          key: `a:${g.author}\u0000${i}`,
          weight: part.length + 1,
          estimate: headHeight + part.length * (cardHeight + 20),
          render: () => renderAuthor(g, part, first),
        });
      }
    }
    return out;
  }

  function renderAuthor(g: AuthorGroup, part: BranchRow[], first: boolean): HTMLElement {
    const name = g.author || "No commits";
    return h(
      "section",
      { class: "author-group", testid: "author-group", data: { author: g.author } },
      h(
        "header",
        { class: "stack-head" },
        h("h3", { class: "stack-title" }, first ? name : `${name} (continued)`),
        h("span", { class: "muted stack-meta" }, count(g.branches.length, "branch", "branches"), Number.isFinite(g.activity) ? [" · ", timeEl(new Date(g.activity).toISOString())] : null),
      ),
      h(
        "ul",
        { class: "cards" },
        part.map((b) => h("li", null, branchCard(repoID, b, null, stackRootOf(b)))),
      ),
    );
  }

  function stackRootOf(b: BranchRow): string | null {
    return model?.stackByKey.get(b.stackKey)?.root ?? null;
  }

  // toggleStack folds or unfolds a stack; the focus goes to its toggle (a
  // focused card of a folded stack is gone).
  function toggleStack(key: string): void {
    if (collapsed.has(key)) collapsed.delete(key);
    else collapsed.add(key);
    renderList({ keep: true });
    const el = list.elementOf(`s:${key}`);
    if (el) restoreFocus(el, `t:${key}`);
  }

  // renderList rebuilds the blocks from the model, the filter and the grouping.
  // keep: hold the first visible block where it is (a re-render in place).
  function renderList(opts: { keep: boolean }): void {
    const m = model;
    if (!m) return;
    const q = parseQuery(query);
    const { stacks, hit: hits, hitCount } = filterStacks(m.stacks, q);
    const blocks = groupBy === "stack" ? stacks.map((s) => stackBlock(s, hits)) : authorBlocks(groupByAuthor(stacks, hits));
    const shownBranches = hits ? hitCount : m.branchCount;
    summary.textContent = hits
      ? `${count(shownBranches, "branch matches", "branches match")} in ${count(stacks.length, "stack", "stacks")}`
      : `${count(m.stacks.length, "stack", "stacks")} · ${count(m.branchCount, "branch", "branches")} · ${num(m.restackCount)} need${m.restackCount === 1 ? "s" : ""} restack`;
    const stickyBottom = toolbar.getBoundingClientRect().bottom;
    const anchor = opts.keep ? list.anchor(Math.max(0, stickyBottom)) : null;
    // The focus inside the list: its element and the block that holds it.
    const active = document.activeElement;
    const inList = active instanceof HTMLElement && listEl.contains(active);
    const fk = inList ? focusKey() : null;
    const focusBlock = inList ? (active.closest<HTMLElement>("[data-key]")?.dataset["key"] ?? null) : null;
    list.setBlocks(blocks, 1);
    if (anchor) {
      const el = list.elementOf(anchor.key);
      if (el) window.scrollBy(0, el.getBoundingClientRect().top - anchor.top);
    }
    if (focusBlock !== null) {
      list.elementOf(focusBlock);
      restoreFocus(listEl, fk);
    }
    listEl.dataset["version"] = String(m.version);
    listEl.dataset["ready"] = "true";
    if (m.stacks.length === 0) {
      replace(emptyEl, emptyState());
    } else if (blocks.length === 0) {
      replace(emptyEl, h("p", { class: "empty", testid: "no-match" }, "No branch matches the filter."));
    } else {
      replace(emptyEl);
    }
    collapseAll.disabled = groupBy !== "stack";
    expandAll.disabled = groupBy !== "stack";
  }

  function emptyState(): HTMLElement {
    return h(
      "div",
      { class: "empty", testid: "empty-state" },
      h("h2", null, "No stacks yet"),
      h("p", null, "This repository has no branch besides trunk. A stack is a chain of branches, each on top of the one below it, down to trunk. stackd finds a branch's parent in:"),
      h(
        "ul",
        null,
        h("li", null, h("strong", null, "stackit"), " metadata: ", h("code", null, "refs/stackit/metadata/<branch>"), " (and stack titles in ", h("code", null, "refs/stackit/stacks/<id>"), ");"),
        h("li", null, h("strong", null, "Graphite"), " metadata: ", h("code", null, "refs/branch-metadata/<branch>"), ";"),
        h("li", null, h("strong", null, "plain stacked branches"), ": without metadata, the nearest other branch tip (or trunk) below the branch is its parent."),
      ),
      h("p", null, "Create branches with stackit or Graphite, or branch off trunk and off each other with git, then push them (with their metadata refs) and sync."),
    );
  }

  function showView(v: RepoView, newEtag: string | null, rerender: boolean): void {
    model = buildModel(v);
    etag = newEtag;
    storeModel({ repoID, etag, model });
    mountContent();
    renderFacts();
    renderTrunk();
    renderList({ keep: rerender });
  }

  let mounted = false;
  function mountContent(): void {
    if (mounted) return;
    mounted = true;
    replace(content, trunkEl, h("h2", { class: "visually-hidden" }, "Stacks"), topSentinel, toolbar, emptyEl, listEl);
  }

  async function loadRepo(): Promise<void> {
    try {
      const a = await call("get", "/api/v1/repos/{repoID}", { path: { repoID }, signal: ctx.signal });
      if (a.data) {
        repo = a.data;
        renderFacts();
      }
    } catch (e) {
      if (isAbort(e)) return;
      if (e instanceof ApiError && e.status === 404 && !model) {
        replace(content, errorBox(e));
        live.close();
      }
    }
  }

  async function first(): Promise<void> {
    const cached = cachedModel(repoID);
    try {
      const a = await call("get", "/api/v1/repos/{repoID}/view", { path: { repoID }, etag: cached?.etag ?? null, signal: ctx.signal });
      if (a.status === 304 && cached) {
        model = cached.model;
        etag = cached.etag;
        mountContent();
        renderFacts();
        renderTrunk();
        renderList({ keep: false });
      } else if (a.data) {
        showView(a.data, a.etag, false);
      }
      if (!firstShown) {
        firstShown = true;
        measure("stackd:first-stacks", ctx.navStart);
      }
      live.start();
    } catch (e) {
      if (isAbort(e)) return;
      replace(content, errorBox(e, () => {
        replace(content, loading("the stacks"));
        void first();
      }));
    }
  }

  // refetch loads the view again with If-None-Match and re-renders in place;
  // calls during a fetch are folded into one more fetch after it.
  let fetching = false;
  let again = false;
  async function refetch(t0: number): Promise<void> {
    if (fetching) {
      again = true;
      return;
    }
    fetching = true;
    try {
      const a = await call("get", "/api/v1/repos/{repoID}/view", { path: { repoID }, etag, signal: ctx.signal });
      refreshError.hidden = true;
      if (a.status !== 304 && a.data) {
        showView(a.data, a.etag, true);
        measure("stackd:rerender", t0);
      }
    } catch (e) {
      if (isAbort(e)) return;
      refreshError.hidden = false;
      replace(refreshError, errorBox(e, () => void refetch(performance.now())));
    } finally {
      fetching = false;
      if (again) {
        again = false;
        void refetch(performance.now());
      }
    }
  }

  // Filter and grouping: applied at once, kept in the URL (replaceState).
  filter.addEventListener("input", () => {
    const t0 = performance.now();
    query = filter.value;
    // Read the layout before changing the DOM (no forced second layout).
    const top = topSentinel.getBoundingClientRect().top;
    renderList({ keep: false });
    if (top < 0) window.scrollBy(0, top);
    measure("stackd:filter", t0);
    saveURL();
  });
  group.addEventListener("change", () => {
    groupBy = group.value === "author" ? "author" : "stack";
    renderList({ keep: false });
    saveURL();
  });
  expandAll.addEventListener("click", () => {
    collapsed.clear();
    renderList({ keep: true });
  });
  collapseAll.addEventListener("click", () => {
    if (!model) return;
    for (const s of model.stacks) collapsed.add(s.key);
    renderList({ keep: true });
  });

  // saveURL keeps the filter and grouping in the address (replaceState),
  // once typing pauses: replaceState costs milliseconds per call.
  let urlTimer = 0;
  function saveURL(): void {
    window.clearTimeout(urlTimer);
    urlTimer = window.setTimeout(writeURL, 400);
  }
  ctx.signal.addEventListener("abort", () => window.clearTimeout(urlTimer));

  function writeURL(): void {
    if (ctx.signal.aborted) return;
    const sp = new URLSearchParams();
    if (query) sp.set("q", query);
    if (groupBy === "author") sp.set("by", "author");
    const s = sp.toString();
    history.replaceState(history.state, "", `${location.pathname}${s ? `?${s}` : ""}`);
  }

  // Keyboard: j/k move between cards, x folds the focused stack.
  function move(dir: 1 | -1): void {
    const links = () => Array.from(listEl.querySelectorAll<HTMLElement>('[data-testid="branch-name"]'));
    let all = links();
    const active = document.activeElement;
    let i = active instanceof HTMLElement ? all.indexOf(active) : -1;
    if (i < 0) {
      const top = toolbar.getBoundingClientRect().bottom;
      const first = all.find((el) => el.getBoundingClientRect().top >= top) ?? all[0];
      first?.focus();
      first?.scrollIntoView({ block: "nearest" });
      return;
    }
    let next = all[i + dir];
    if (!next && active) {
      const more = dir === 1 ? list.renderAfter(active) : list.renderBefore(active);
      if (more) {
        all = links();
        i = all.indexOf(active as HTMLElement);
        next = all[i + dir];
      }
    }
    if (next) {
      next.focus();
      next.scrollIntoView({ block: "nearest" });
    }
  }

  function foldFocused(): void {
    const a = document.activeElement;
    const section = a instanceof HTMLElement ? a.closest<HTMLElement>('[data-testid="stack"]') : null;
    const key = section?.dataset["key"];
    if (key?.startsWith("s:")) toggleStack(key.slice(2));
  }

  ctx.setShortcuts([
    { keys: "/", description: "Focus the filter", run: () => filter.focus() },
    { keys: "j", description: "Next branch", run: () => move(1) },
    { keys: "k", description: "Previous branch", run: () => move(-1) },
    { keys: "x", description: "Fold or unfold the stack of the focused branch", run: foldFocused },
    { keys: "a", description: "Group by stack or by author", run: () => {
      group.value = groupBy === "stack" ? "author" : "stack";
      group.dispatchEvent(new Event("change"));
    } },
    ...(sync ? [{ keys: "s", description: "Sync now", run: () => sync.start() }] : []),
    { keys: "g h", description: "Sync history", run: () => ctx.navigate(syncsPath(repoID)) },
    { keys: "u", description: "Up: the repositories", run: () => ctx.navigate(reposPath()) },
  ]);

  // Relative times stay fresh.
  const timer = window.setInterval(() => refreshTimes(root), 30_000);
  ctx.signal.addEventListener("abort", () => window.clearInterval(timer));

  void first();
  void loadRepo();
}

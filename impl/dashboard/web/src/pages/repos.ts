// The repositories page: every repository the caller may read, with its kind,
// trunk, remote, sync state and counts (all from GET /api/v1/repos);
// onboarding where the caller may onboard (config.onboarding), removal of the
// mirrors onboarded through the API (origin "api").

import { forget } from "../cache";
import { call, type Repo, type RepoCreate } from "../client";
import type { Ctx } from "../ctx";
import { badge, count, errorBox, h, isAbort, link, loading, refreshTimes, replace, num } from "../dom";
import { restoreFocus, focusKey } from "../lazylist";
import { repoPath } from "../routes";
import { syncStateLine } from "./repo";

export function reposPage(root: HTMLElement, ctx: Ctx): void {
  ctx.setTrail("Repositories", []);
  const flash = ctx.takeFlash();
  const listEl = h("div", { class: "repo-list-wrap" }, loading("repositories"));
  const status = h("p", { class: "visually-hidden", attrs: { role: "status", "aria-live": "polite" } });
  replace(
    root,
    h("h1", { attrs: { tabindex: -1 } }, "Repositories"),
    flash ? h("p", { class: "flash", testid: "flash", attrs: { role: "status" } }, flash) : null,
    ctx.canMutate ? addForm(ctx, () => void load()) : null,
    listEl,
    status,
  );
  ctx.setShortcuts([]);

  let repos: Repo[] = [];

  async function load(): Promise<void> {
    try {
      const a = await call("get", "/api/v1/repos", { signal: ctx.signal });
      repos = a.data ?? [];
      render();
    } catch (e) {
      if (isAbort(e)) return;
      replace(listEl, errorBox(e, () => void load()));
    }
  }

  function render(): void {
    const focus = focusKey();
    if (repos.length === 0) {
      replace(
        listEl,
        h(
          "div",
          { class: "empty", testid: "no-repos" },
          h("p", null, "No repositories are served yet."),
          ctx.canMutate ? h("p", null, "Add one with the form above: stackd clones it into a mirror and serves its stacks.") : null,
        ),
      );
      return;
    }
    const ul = h("ul", { class: "repo-list", testid: "repo-list" });
    for (const r of repos) ul.appendChild(repoRow(r));
    replace(listEl, ul);
    restoreFocus(listEl, focus);
  }

  function repoRow(r: Repo): HTMLElement {
    const actions = h("div", { class: "repo-actions" });
    // Only a mirror onboarded through the API can be removed through it.
    if (ctx.canMutate && r.origin === "api") {
      actions.appendChild(
        h(
          "button",
          {
            class: "danger",
            testid: "remove-repo",
            attrs: { type: "button", "aria-label": `Remove the mirror ${r.id}` },
            data: { focusKey: `rm:${r.id}` },
            on: { click: () => confirmRemove(ctx, r, status, () => void load()) },
          },
          "Remove",
        ),
      );
    }
    return h(
      "li",
      { class: "repo-row", testid: "repo-row", data: { repo: r.id } },
      h(
        "div",
        { class: "repo-head" },
        h("h2", null, link(repoPath(r.id), { testid: "repo-link", data: { focusKey: `r:${r.id}` } }, r.id)),
        badge(r.kind === "local" ? "working repository" : "mirror", r.kind, { testid: "repo-kind" }),
        actions,
      ),
      h(
        "dl",
        { class: "facts" },
        h("div", null, h("dt", null, "Trunk"), h("dd", { testid: "repo-trunk" }, h("code", null, r.trunk))),
        h("div", null, h("dt", null, "Remote"), h("dd", { testid: "repo-remote" }, r.remote ? h("code", null, r.remote) : "none")),
        r.fullName ? h("div", null, h("dt", null, "Name"), h("dd", null, r.fullName)) : null,
        h("div", null, h("dt", null, "Sync"), h("dd", { testid: "repo-sync" }, syncStateLine(r))),
        h("div", null, h("dt", null, "Stacks"), h("dd", null, counts(r))),
      ),
    );
  }

  void load();
  // The sync states change: look again every 15 s while the page is open.
  const timer = window.setInterval(() => {
    if (document.visibilityState === "visible") void load();
    refreshTimes(root);
  }, 15_000);
  ctx.signal.addEventListener("abort", () => window.clearInterval(timer));
}

/** What the repository's view holds, as the server counted it; none before a first view. */
function counts(r: Repo): HTMLElement {
  const c = r.counts;
  if (!c || r.viewVersion === null || r.viewVersion === undefined) {
    return h("span", { testid: "repo-counts", data: { state: "none" } }, "no view yet");
  }
  return h(
    "span",
    { testid: "repo-counts", data: { state: "done" } },
    h("span", { testid: "count-stacks" }, count(c.stacks, "stack", "stacks")),
    " · ",
    h("span", { testid: "count-branches" }, count(c.branches, "branch", "branches")),
    " · ",
    h("span", { testid: "count-restack", class: c.needsRestack > 0 ? "warn" : "" }, `${num(c.needsRestack)} need${c.needsRestack === 1 ? "s" : ""} restack`),
  );
}

function addForm(ctx: Ctx, done: () => void): HTMLElement {
  const url = h("input", { attrs: { type: "text", name: "url", required: true, autocomplete: "off", spellcheck: "false", placeholder: "https://github.com/owner/name.git", maxlength: 2048 }, testid: "add-url" });
  const id = h("input", { attrs: { type: "text", name: "id", autocomplete: "off", spellcheck: "false", pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}", placeholder: "from the URL" }, testid: "add-id" });
  const trunk = h("input", { attrs: { type: "text", name: "trunk", autocomplete: "off", spellcheck: "false", placeholder: "the remote's default branch", maxlength: 1024 }, testid: "add-trunk" });
  const submit = h("button", { attrs: { type: "submit" }, testid: "add-submit" }, "Add repository");
  const out = h("div", { class: "form-result", attrs: { "aria-live": "polite" }, testid: "add-result" });
  const form = h(
    "form",
    { class: "add-repo", testid: "add-repo-form" },
    h("label", null, "Remote URL", url),
    h("div", { class: "form-row" }, h("label", null, "Id (optional)", id), h("label", null, "Trunk (optional)", trunk)),
    h("div", { class: "form-actions" }, submit),
    out,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body: RepoCreate = { url: url.value.trim() };
    if (id.value.trim()) body.id = id.value.trim();
    if (trunk.value.trim()) body.trunk = trunk.value.trim();
    submit.disabled = true;
    replace(out, h("p", { attrs: { role: "status" }, testid: "add-progress" }, "Cloning… a large repository takes a while."));
    call("post", "/api/v1/repos", { body, signal: ctx.signal })
      .then((a) => {
        const r = a.data;
        form.reset();
        replace(out, h("p", { class: "ok", attrs: { role: "status" }, testid: "add-ok" }, "Added ", r ? link(repoPath(r.id), null, r.id) : "the repository", "."));
        done();
      })
      .catch((e: unknown) => {
        if (isAbort(e)) return;
        replace(out, errorBox(e));
      })
      .finally(() => {
        submit.disabled = false;
      });
  });
  return h("details", { class: "add-repo-wrap" }, h("summary", { testid: "add-repo" }, "Add a repository"), form);
}

function confirmRemove(ctx: Ctx, r: Repo, status: HTMLElement, done: () => void): void {
  const result = h("div", { attrs: { "aria-live": "polite" } });
  const confirm = h("button", { class: "danger", attrs: { type: "button" }, testid: "confirm-remove" }, `Remove ${r.id}`);
  const cancel = h("button", { attrs: { type: "button", autofocus: true }, testid: "cancel-remove" }, "Cancel");
  const dialog = h(
    "dialog",
    { class: "confirm", testid: "remove-dialog", attrs: { "aria-labelledby": "remove-title" } },
    h("h2", { attrs: { id: "remove-title" } }, "Remove this repository?"),
    h("p", null, "stackd stops serving the mirror ", h("strong", null, r.id), ", cancels its syncs and deletes its clone and sync history. The upstream is not touched; it can be added again later."),
    result,
    h("div", { class: "form-actions" }, cancel, confirm),
  );
  cancel.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());
  confirm.addEventListener("click", () => {
    confirm.disabled = true;
    call("delete", "/api/v1/repos/{repoID}", { path: { repoID: r.id }, signal: ctx.signal })
      .then(() => {
        forget(r.id);
        dialog.close();
        status.textContent = `${r.id} was removed.`;
        done();
        // The row and its button are gone: the focus goes to the page's heading.
        document.querySelector<HTMLElement>("main h1")?.focus();
      })
      .catch((e: unknown) => {
        if (isAbort(e)) return;
        confirm.disabled = false;
        replace(result, errorBox(e));
      });
  });
  document.body.appendChild(dialog);
  dialog.showModal();
  cancel.focus();
}

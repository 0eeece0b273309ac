// The Sync button of a repository page and the result it shows: queued, then
// running, then the refs the run created, updated, forced and deleted (or the
// problem's title and detail). A 429 (or 503) is honoured: the button waits
// out Retry-After.

import { ApiError, call, type RefUpdate, type SyncResult } from "./client";
import { describe, h, isAbort, link, replace, num } from "./dom";
import { branchOfRef, branchPath } from "./routes";
import { formatDuration } from "./time";

export type SyncPhase = "idle" | "queued" | "running" | "succeeded" | "failed" | "error" | "waiting";

export class SyncControl {
  readonly button: HTMLButtonElement;
  readonly panel: HTMLElement;
  private phase: SyncPhase = "idle";
  private countdown = 0;
  private ac: AbortController | null = null;

  constructor(
    private readonly repoID: string,
    private readonly signal: AbortSignal,
    private readonly onFinished: () => void,
  ) {
    this.button = h("button", { class: "primary", testid: "sync-button", attrs: { type: "button" } }, "Sync now");
    this.button.addEventListener("click", () => this.start());
    this.panel = h("div", { class: "sync-result", testid: "sync-result", attrs: { "aria-live": "polite" } });
    this.panel.hidden = true;
    signal.addEventListener("abort", () => {
      this.ac?.abort();
      window.clearInterval(this.countdown);
    });
  }

  private set(phase: SyncPhase, ...content: Parameters<typeof replace>[1][]): void {
    this.phase = phase;
    this.panel.dataset["state"] = phase;
    this.panel.hidden = false;
    replace(this.panel, ...content);
    const busy = phase === "queued" || phase === "running";
    this.button.disabled = busy || phase === "waiting";
    this.button.setAttribute("aria-busy", busy ? "true" : "false");
  }

  /** Starts a sync (the button, or the "s" shortcut). */
  start(): void {
    if (this.button.disabled) return;
    this.set("queued", h("p", { testid: "sync-phase" }, "Queued…"));
    this.ac = new AbortController();
    const onAbort = () => this.ac?.abort();
    this.signal.addEventListener("abort", onAbort);
    // Synchronous sync (wait=true): the answer is the run's result, or its
    // problem with title and detail. The event stream says when it runs.
    call("post", "/api/v1/repos/{repoID}/sync", { path: { repoID: this.repoID }, query: { wait: true }, signal: this.ac.signal })
      .then((a) => {
        const r = a.data;
        if (r) this.showResult(r);
        else this.set("succeeded", h("p", null, "Synced."));
        this.onFinished();
      })
      .catch((e: unknown) => {
        if (isAbort(e)) return;
        this.showError(e);
        this.onFinished();
      })
      .finally(() => this.signal.removeEventListener("abort", onAbort));
  }

  /** Events of the repository's stream: a run started while ours waits is ours (a sync joins or follows a queued run). */
  onStarted(r: SyncResult): void {
    if (this.phase === "queued") {
      this.set("running", h("p", { testid: "sync-phase" }, `Running (${r.mode === "reread" ? "re-reading refs" : "fetching"})…`));
    }
  }

  private showResult(r: SyncResult): void {
    if (r.state === "failed") {
      this.set("failed", h("p", { class: "error-title", testid: "sync-problem-title" }, "Sync failed"), r.error ? h("p", { testid: "sync-problem-detail" }, r.error) : null);
      return;
    }
    this.set("succeeded", ...syncSummary(this.repoID, r));
  }

  private showError(e: unknown): void {
    if (e instanceof ApiError && (e.status === 429 || e.status === 503) && e.retryAfter !== null) {
      this.wait(e, e.retryAfter);
      return;
    }
    const { title, detail } = describe(e);
    this.set(
      e instanceof ApiError && e.problem?.syncId ? "failed" : "error",
      h("p", { class: "error-title", testid: "sync-problem-title" }, title),
      detail ? h("p", { testid: "sync-problem-detail" }, detail) : null,
    );
  }

  // wait disables the button for Retry-After seconds, counting down.
  private wait(e: ApiError, seconds: number): void {
    let left = Math.max(1, Math.ceil(seconds));
    const line = h("p", { testid: "sync-retry-after" });
    const tick = () => {
      line.textContent = `Try again in ${left} s.`;
    };
    tick();
    this.set("waiting", h("p", { class: "error-title", testid: "sync-problem-title" }, e.title), e.detail ? h("p", { testid: "sync-problem-detail" }, e.detail) : null, line);
    window.clearInterval(this.countdown);
    this.countdown = window.setInterval(() => {
      left--;
      if (left <= 0) {
        window.clearInterval(this.countdown);
        this.phase = "idle";
        this.button.disabled = false;
        line.textContent = "You can sync again.";
        return;
      }
      tick();
    }, 1000);
  }
}

const changeOrder: RefUpdate["change"][] = ["created", "updated", "forced", "deleted"];

/** What a finished sync changed: a line, then the refs by kind of change, linking the branches. */
export function syncSummary(repoID: string, r: SyncResult): HTMLElement[] {
  const out: HTMLElement[] = [];
  const took = r.durationMs !== null && r.durationMs !== undefined ? ` in ${formatDuration(r.durationMs)}` : "";
  out.push(
    h(
      "p",
      { testid: "sync-summary" },
      r.updatedRefsTotal === 0 ? `Synced${took}: nothing changed.` : `Synced${took}: ${num(r.updatedRefsTotal)} ref${r.updatedRefsTotal === 1 ? "" : "s"} changed.`,
    ),
  );
  const refs = refLists(repoID, r);
  if (refs) out.push(refs);
  return out;
}

/** The changed refs of a run grouped by change, or null when there are none. */
export function refLists(repoID: string, r: SyncResult): HTMLElement | null {
  if (r.updatedRefs.length === 0) return null;
  const groups = new Map<RefUpdate["change"], RefUpdate[]>();
  for (const u of r.updatedRefs) {
    const g = groups.get(u.change) ?? [];
    g.push(u);
    groups.set(u.change, g);
  }
  const wrap = h("div", { class: "ref-groups" });
  for (const change of changeOrder) {
    const g = groups.get(change);
    if (!g) continue;
    wrap.appendChild(
      h(
        "section",
        { class: `ref-group ref-${change}`, testid: `refs-${change}` },
        h("h4", null, `${change[0]?.toUpperCase() ?? ""}${change.slice(1)} (${num(g.length)})`),
        h(
          "ul",
          null,
          g.map((u) => {
            const b = branchOfRef(u.ref);
            return h(
              "li",
              { testid: "ref-update", data: { change: u.change } },
              b !== null && change !== "deleted" ? link(branchPath(repoID, b), { testid: "ref-link" }, b) : h("code", null, b ?? u.ref),
            );
          }),
        ),
      ),
    );
  }
  const missing = r.updatedRefsTotal - r.updatedRefs.length;
  if (missing > 0) wrap.appendChild(h("p", { class: "muted" }, `and ${num(missing)} more, not listed.`));
  return wrap;
}

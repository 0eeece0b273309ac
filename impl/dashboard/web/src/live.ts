// The event stream of an open repository page (one per page). EventSource
// reconnects by itself with Last-Event-ID; when it gives up (the server
// answered an error, e.g. 429 or a restart), the stream is opened again after
// a backoff with the last id in `lastEventId`. The indicator shows live or
// reconnecting.

import type { BranchSwitchedEvent, RepoRemovedEvent, StreamHello, SyncResult, ViewUpdatedEvent } from "./client";
import { eventsURL } from "./client";
import { h } from "./dom";

export interface LiveHandlers {
  connected?: (d: StreamHello) => void;
  resync?: (d: StreamHello) => void;
  viewUpdated?: (d: ViewUpdatedEvent) => void;
  branchSwitched?: (d: BranchSwitchedEvent) => void;
  repoRemoved?: (d: RepoRemovedEvent) => void;
  syncStarted?: (d: SyncResult) => void;
  syncFinished?: (d: SyncResult) => void;
  syncFailed?: (d: SyncResult) => void;
  /** The stream could not be opened again; the page checks why (404: removed, 401: signed out). */
  gaveUp?: () => void;
}

export type LiveState = "connecting" | "live" | "reconnecting" | "offline";

const labels: Record<LiveState, string> = {
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  offline: "offline",
};

export class Live {
  readonly indicator: HTMLElement;
  private es: EventSource | null = null;
  private lastId: string | null = null;
  private retries = 0;
  private timer = 0;
  private closed = false;

  constructor(
    private readonly repoID: string,
    private readonly handlers: LiveHandlers,
  ) {
    this.indicator = h("span", {
      class: "live",
      testid: "live-indicator",
      attrs: { role: "status", "aria-live": "polite", title: "Updates from the server's event stream" },
    });
    this.setState("connecting");
  }

  get state(): LiveState {
    return (this.indicator.dataset["state"] as LiveState | undefined) ?? "connecting";
  }

  private setState(s: LiveState): void {
    this.indicator.dataset["state"] = s;
    this.indicator.textContent = labels[s];
  }

  start(): void {
    if (this.closed) return;
    const es = new EventSource(eventsURL(this.repoID, this.lastId), { withCredentials: false });
    this.es = es;
    const on = <T>(type: string, fn: ((d: T) => void) | undefined) => {
      es.addEventListener(type, (ev) => {
        const me = ev as MessageEvent<string>;
        if (me.lastEventId) this.lastId = me.lastEventId;
        let data: T;
        try {
          data = JSON.parse(me.data) as T;
        } catch {
          return;
        }
        fn?.(data);
      });
    };
    on<StreamHello>("connected", (d) => {
      this.retries = 0;
      this.setState("live");
      this.handlers.connected?.(d);
    });
    on<StreamHello>("resync", this.handlers.resync);
    on<ViewUpdatedEvent>("view_updated", this.handlers.viewUpdated);
    on<BranchSwitchedEvent>("branch_switched", this.handlers.branchSwitched);
    on<RepoRemovedEvent>("repo_removed", (d) => {
      this.close();
      this.handlers.repoRemoved?.(d);
    });
    on<SyncResult>("sync_started", this.handlers.syncStarted);
    on<SyncResult>("sync_finished", this.handlers.syncFinished);
    on<SyncResult>("sync_failed", this.handlers.syncFailed);
    es.addEventListener("error", () => {
      if (this.closed) return;
      if (es.readyState === EventSource.CONNECTING) {
        // EventSource reconnects by itself, sending Last-Event-ID.
        this.setState("reconnecting");
        return;
      }
      // Closed for good (an error answer): open again after a backoff.
      es.close();
      this.es = null;
      this.setState("reconnecting");
      this.retries++;
      this.handlers.gaveUp?.();
      const delay = Math.min(30_000, 1000 * 2 ** Math.min(this.retries - 1, 5));
      this.timer = window.setTimeout(() => this.start(), delay);
    });
  }

  /** The id of the last event received (sent as Last-Event-ID / lastEventId on reconnection). */
  get lastEventId(): string | null {
    return this.lastId;
  }

  close(): void {
    this.closed = true;
    window.clearTimeout(this.timer);
    this.es?.close();
    this.es = null;
    this.setState("offline");
  }
}

// What every page gets from the app: the server's posture, the caller, and
// the page's lifetime (its signal is aborted when the page is left).

import type { Me, ServerConfig } from "./client";
import type { Shortcut } from "./shortcuts";

export interface Crumb {
  label: string;
  href?: string;
}

export interface Ctx {
  config: ServerConfig;
  /** The signed-in user; null when anonymous (or in the local posture, where there are no users). */
  me: Me | null;
  /** Mutating controls are shown: the server says this caller may onboard (config.onboarding), and mutate alike. */
  canMutate: boolean;
  /** Aborted when the page is left: fetches stop, streams close. */
  signal: AbortSignal;
  /** performance.now() when the navigation to this page started (0: the page load). */
  navStart: number;
  navigate(path: string, opts?: { replace?: boolean }): void;
  /** Sets the document title and the breadcrumb trail. */
  setTrail(title: string, crumbs: Crumb[]): void;
  setShortcuts(list: Shortcut[]): void;
  /** A message for the next page (e.g. "the repository was removed"). */
  flash(message: string): void;
  /** Takes the flash message, once. */
  takeFlash(): string | null;
}

/**
 * Records a performance measure for the benchmark harness, from start to the
 * end of the next frame (after the browser laid out and painted the change).
 */
export function measure(name: string, start: number): void {
  requestAnimationFrame(() => {
    window.setTimeout(() => {
      try {
        performance.measure(name, { start, end: performance.now() });
      } catch {
        // User Timing L3 missing: nothing to record.
      }
    }, 0);
  });
}

// Small DOM helpers. Every string becomes a text node or an attribute value:
// the app never builds HTML from data (branch names, commit subjects, authors
// and PR titles come from remotes anyone may push to).

import { ApiError } from "./client";
import { httpURL, visible } from "./safe";
import { absoluteTime, parseTime, relativeTime } from "./time";

export type Child = Node | string | number | null | undefined | false | Child[];

export interface Props {
  class?: string;
  /** data-testid, for the browser tests. */
  testid?: string;
  /** Attributes (aria-*, role, type, ...). Never event handlers or style. */
  attrs?: Record<string, string | number | boolean | null | undefined>;
  /** data-* values, by their dataset name. */
  data?: Record<string, string>;
  on?: { [K in keyof HTMLElementEventMap]?: (ev: HTMLElementEventMap[K]) => void };
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props?: Props | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props) {
    if (props.class) el.className = props.class;
    if (props.testid) el.setAttribute("data-testid", props.testid);
    if (props.attrs) {
      for (const [k, v] of Object.entries(props.attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (/^on/i.test(k) || k.toLowerCase() === "style") throw new Error(`attribute ${k} is not allowed`);
        el.setAttribute(k, v === true ? "" : typeof v === "string" ? visible(v) : String(v));
      }
    }
    if (props.data) for (const [k, v] of Object.entries(props.data)) el.dataset[k] = v;
    if (props.on) {
      for (const [k, fn] of Object.entries(props.on)) {
        if (fn) el.addEventListener(k, fn as EventListener);
      }
    }
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (typeof c === "string") el.appendChild(document.createTextNode(visible(c)));
    else if (typeof c === "number") el.appendChild(document.createTextNode(String(c)));
    else el.appendChild(c);
  }
}

/** Replaces the children of el. */
export function replace(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

/** A link to a page of the app (the router handles the click). */
export function link(href: string, props: Props | null, ...children: Child[]): HTMLAnchorElement {
  const a = h("a", props, ...children);
  a.setAttribute("href", href);
  a.dataset["nav"] = "";
  return a;
}

/**
 * A link to an outside URL when it is http(s), else the text alone: a PR URL
 * with another scheme (javascript:, data:) never becomes a link.
 */
export function extLink(url: string | null | undefined, props: Props | null, ...children: Child[]): HTMLElement {
  const safe = httpURL(url);
  if (safe === null) return h("span", props, ...children);
  const a = h("a", props, ...children);
  a.setAttribute("href", safe);
  a.setAttribute("rel", "noopener noreferrer nofollow");
  a.setAttribute("target", "_blank");
  return a;
}

/** A <time> with a relative text and the absolute time on hover (kept fresh by refreshTimes). */
export function timeEl(iso: string | null | undefined, props?: Props | null): HTMLElement {
  const t = parseTime(iso);
  if (!Number.isFinite(t)) return h("span", props ?? null, "unknown time");
  const el = h("time", props ?? null, relativeTime(t, Date.now()));
  el.setAttribute("datetime", new Date(t).toISOString());
  el.title = absoluteTime(t);
  el.dataset["rel"] = "";
  return el;
}

/** Updates the relative text of every <time data-rel> under root. */
export function refreshTimes(root: ParentNode): void {
  const now = Date.now();
  for (const el of root.querySelectorAll<HTMLTimeElement>("time[data-rel]")) {
    const t = Date.parse(el.dateTime);
    const s = relativeTime(t, now);
    if (el.textContent !== s) el.textContent = s;
  }
}

/** A loading state. */
export function loading(what: string): HTMLElement {
  return h("p", { class: "loading", testid: "loading", attrs: { role: "status" } }, `Loading ${what}…`);
}

/** An error state: the problem's title and detail, and a retry when given. */
export function errorBox(err: unknown, retry?: () => void): HTMLElement {
  const { title, detail } = describe(err);
  return h(
    "div",
    { class: "error", testid: "error", attrs: { role: "alert" } },
    h("p", { class: "error-title", testid: "error-title" }, title),
    detail ? h("p", { class: "error-detail", testid: "error-detail" }, detail) : null,
    retry ? h("button", { attrs: { type: "button" }, testid: "retry", on: { click: () => retry() } }, "Try again") : null,
  );
}

export function describe(err: unknown): { title: string; detail: string | null } {
  if (err instanceof ApiError) return { title: err.title, detail: err.detail };
  if (err instanceof Error) return { title: "Something went wrong", detail: err.message };
  return { title: "Something went wrong", detail: String(err) };
}

export function isAbort(err: unknown): boolean {
  return err instanceof DOMException && err.name === "AbortError";
}

const numberFormat = new Intl.NumberFormat();

/** A number with the reader's grouping ("50,000"); one formatter for all (toLocaleString makes one per call). */
export function num(n: number): string {
  return numberFormat.format(n);
}

/** "1 branch", "3 branches". */
export function count(n: number, one: string, many: string): string {
  return `${num(n)} ${n === 1 ? one : many}`;
}

/** A badge (a short label with a class for its colour). */
export function badge(text: string, kind: string, props?: Props): HTMLElement {
  return h("span", { ...props, class: `badge badge-${kind}${props?.class ? ` ${props.class}` : ""}` }, text);
}

export function shortSHA(sha: string): string {
  return sha.slice(0, 7);
}

/** A button that shows a short SHA and copies the full one. */
export function shaButton(sha: string): HTMLButtonElement {
  const b = h(
    "button",
    {
      class: "sha",
      testid: "copy-sha",
      attrs: { type: "button", title: `Copy ${sha}`, "aria-label": `Copy commit ${sha}` },
      data: { sha },
    },
    shortSHA(sha),
  );
  b.addEventListener("click", () => {
    void copyText(sha).then((ok) => {
      b.dataset["copied"] = ok ? "true" : "false";
      const old = b.textContent;
      b.textContent = ok ? "copied" : "copy failed";
      window.setTimeout(() => {
        b.textContent = old;
      }, 1200);
    });
  });
  return b;
}

async function copyText(s: string): Promise<boolean> {
  try {
    if (navigator.clipboard) {
      await navigator.clipboard.writeText(s);
      return true;
    }
  } catch {
    // fall through to the selection copy
  }
  const ta = h("textarea", { class: "offscreen", attrs: { readonly: true, "aria-hidden": "true" } });
  ta.value = s;
  document.body.appendChild(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

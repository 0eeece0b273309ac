// Keyboard shortcuts: global ones and those of the open page, listed in a
// dialog under "?". Keys typed into a field are left alone (but Escape).

import { h } from "./dom";

export interface Shortcut {
  /** The keys as shown and matched: "?", "/", "j", "g r" (a sequence). */
  keys: string;
  description: string;
  run: () => void;
}

let global: Shortcut[] = [];
let page: Shortcut[] = [];
let pending = "";
let pendingTimer = 0;
let dialog: HTMLDialogElement | null = null;

export function setGlobalShortcuts(list: Shortcut[]): void {
  global = list;
}

/** The open page's shortcuts (replaced on every navigation). */
export function setPageShortcuts(list: Shortcut[]): void {
  page = list;
}

function editable(t: EventTarget | null): boolean {
  if (!(t instanceof HTMLElement)) return false;
  if (t.isContentEditable) return true;
  const tag = t.tagName;
  if (tag === "TEXTAREA" || tag === "SELECT") return true;
  if (tag === "INPUT") {
    const type = (t as HTMLInputElement).type;
    return !["button", "checkbox", "radio", "submit", "reset"].includes(type);
  }
  return false;
}

export function installShortcuts(): void {
  document.addEventListener("keydown", (ev) => {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (editable(ev.target)) {
      if (ev.key === "Escape" && ev.target instanceof HTMLInputElement && ev.target.type === "search" && ev.target.value !== "") {
        // Escape in the filter clears it (the input event re-filters).
        ev.target.value = "";
        ev.target.dispatchEvent(new Event("input", { bubbles: true }));
        ev.preventDefault();
      }
      return;
    }
    if (dialog?.open) return;
    const key = ev.key;
    if (key.length !== 1 && key !== "Escape") return;
    const seq = pending ? `${pending} ${key}` : key;
    window.clearTimeout(pendingTimer);
    pending = "";
    const all = [...page, ...global];
    const hit = all.find((s) => s.keys === seq);
    if (hit) {
      ev.preventDefault();
      hit.run();
      return;
    }
    if (all.some((s) => s.keys.startsWith(`${seq} `))) {
      pending = seq;
      pendingTimer = window.setTimeout(() => {
        pending = "";
      }, 1500);
      ev.preventDefault();
    }
  });
}

/** Opens the dialog that lists the shortcuts. */
export function showShortcuts(): void {
  dialog?.remove();
  const rows = (list: Shortcut[]) =>
    list.map((s) => [h("dt", null, ...s.keys.split(" ").flatMap((k, i) => [i > 0 ? " then " : null, h("kbd", null, k)])), h("dd", null, s.description)]);
  const close = h("button", { attrs: { type: "button" }, class: "dialog-close", testid: "shortcuts-close" }, "Close");
  dialog = h(
    "dialog",
    { class: "shortcuts", testid: "shortcuts", attrs: { "aria-labelledby": "shortcuts-title" } },
    h("h2", { attrs: { id: "shortcuts-title" } }, "Keyboard shortcuts"),
    page.length > 0 ? [h("h3", null, "This page"), h("dl", null, rows(page))] : null,
    h("h3", null, "Everywhere"),
    h("dl", null, rows(global)),
    h("div", { class: "dialog-actions" }, close),
  );
  const d = dialog;
  close.addEventListener("click", () => d.close());
  d.addEventListener("close", () => d.remove());
  document.body.appendChild(d);
  d.showModal();
  close.focus();
}

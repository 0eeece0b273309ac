// The stackd dashboard: boots from the server's posture (GET /api/v1/config)
// and the caller (GET /api/v1/me), then routes with the History API:
//   /                     repositories
//   /r/{repoID}           a repository
//   /r/{repoID}/b/{name}  a branch (the rest of the path, segments percent-encoded)
//   /r/{repoID}/syncs     the sync history
// Anything else shows the app's own not-found page.

import { ApiError, call, loginURL, onUnauthorized, type Me, type ServerConfig } from "./client";
import type { Crumb, Ctx } from "./ctx";
import { errorBox, h, link, loading, replace } from "./dom";
import { branchPage } from "./pages/branch";
import { repoPage } from "./pages/repo";
import { reposPage } from "./pages/repos";
import { syncsPage } from "./pages/syncs";
import { parseRoute, reposPath } from "./routes";
import { safeReturnPath, visible } from "./safe";
import { installShortcuts, setGlobalShortcuts, setPageShortcuts, showShortcuts } from "./shortcuts";

interface Session {
  config: ServerConfig;
  me: Me | null;
}

let session: Session | null = null;
let pageAbort: AbortController | null = null;
let flashMessage: string | null = null;
let navStart = 0;

const trail = h("nav", { class: "trail", attrs: { "aria-label": "Breadcrumb" }, testid: "breadcrumb" });
const account = h("div", { class: "account", testid: "account" });
const main = h("main", { attrs: { id: "main", tabindex: -1 } });

function shell(): void {
  const app = document.getElementById("app") ?? document.body;
  const help = h("button", { class: "help", attrs: { type: "button", "aria-label": "Keyboard shortcuts", title: "Keyboard shortcuts (?)" }, testid: "help" }, "?");
  help.addEventListener("click", () => showShortcuts());
  replace(
    app,
    h("a", { class: "skip", attrs: { href: "#main" } }, "Skip to content"),
    h(
      "header",
      { class: "top" },
      link(reposPath(), { class: "brand", testid: "brand" }, h("img", { attrs: { src: "/assets/icon.svg", alt: "", width: 20, height: 20 } }), "stackd"),
      trail,
      h("div", { class: "top-right" }, account, help),
    ),
    main,
  );
}

function setTrail(title: string, crumbs: Crumb[]): void {
  document.title = title ? `${visible(title)} · stackd` : "stackd";
  if (crumbs.length === 0) {
    replace(trail);
    return;
  }
  const ol = h("ol");
  crumbs.forEach((c, i) => {
    const last = i === crumbs.length - 1;
    ol.appendChild(h("li", null, c.href && !last ? link(c.href, null, c.label) : h("span", { attrs: { "aria-current": last ? "page" : null } }, c.label)));
  });
  replace(trail, ol);
}

function renderAccount(s: Session): void {
  const parts: Node[] = [];
  if (s.config.readOnly) {
    parts.push(h("span", { class: "badge badge-readonly", testid: "readonly-badge", attrs: { title: "This server is read-only: syncing, onboarding and removal are off." } }, "read-only"));
  }
  if (s.config.authRequired) {
    if (s.me) {
      const who = s.me.email || s.me.name || s.me.subject;
      const out = h("button", { attrs: { type: "button" }, testid: "signout" }, "Sign out");
      out.addEventListener("click", () => void signOut(out));
      parts.push(h("span", { class: "user", testid: "user", attrs: { title: s.me.subject } }, who), out);
    } else {
      const a = h("a", { class: "button-link", testid: "signin-link", attrs: { href: loginURL(currentPath()) } }, "Sign in");
      // The header outlives navigations: the return path is the page's at the click.
      a.addEventListener("click", () => a.setAttribute("href", loginURL(currentPath())));
      parts.push(a);
    }
  }
  replace(account, ...parts);
}

async function signOut(button: HTMLButtonElement): Promise<void> {
  button.disabled = true;
  try {
    await call("post", "/auth/logout", {});
    location.assign("/");
  } catch (e) {
    button.disabled = false;
    const msg = e instanceof ApiError ? e.title : "Sign-out failed";
    button.title = msg;
    replace(button, "Sign out (failed, try again)");
  }
}

function currentPath(): string {
  return safeReturnPath(location.pathname + location.search + location.hash, location.origin);
}

/**
 * Mutating controls (onboarding, sync, removal): where the server said the
 * caller may onboard (config.onboarding, the gate's own answer for this
 * caller's credentials), while the session that answer was for lasts.
 */
function canMutate(s: Session): boolean {
  if (!s.config.onboarding) return false;
  if (s.config.authRequired) return s.me !== null;
  return true;
}

function signInPage(root: HTMLElement): void {
  setTrail("Sign in", []);
  setPageShortcuts([]);
  replace(
    root,
    h(
      "section",
      { class: "signin", testid: "signin-page" },
      h("h1", { attrs: { tabindex: -1 } }, "Sign in to stackd"),
      h("p", null, "This server is private: sign in with your organisation's account to see its repositories."),
      h("a", { class: "button-link primary", testid: "signin", attrs: { href: loginURL(currentPath()) } }, "Sign in"),
    ),
  );
}

function notFoundPage(root: HTMLElement): void {
  setTrail("Not found", []);
  setPageShortcuts([]);
  replace(
    root,
    h(
      "section",
      { class: "not-found", testid: "not-found" },
      h("h1", { attrs: { tabindex: -1 } }, "Page not found"),
      h("p", null, "There is no page at this address."),
      h("p", null, link(reposPath(), null, "See the repositories")),
    ),
  );
}

function navigate(path: string, opts?: { replace?: boolean }): void {
  const url = new URL(path, location.origin);
  if (url.origin !== location.origin) return;
  const target = url.pathname + url.search + url.hash;
  if (opts?.replace) history.replaceState(null, "", target);
  else history.pushState(null, "", target);
  route(true);
}

function route(fromNavigation: boolean): void {
  pageAbort?.abort();
  const ac = new AbortController();
  pageAbort = ac;
  setPageShortcuts([]);
  if (fromNavigation) navStart = performance.now();
  try {
    performance.mark("stackd:navigation", { startTime: navStart });
  } catch {
    // User Timing L3 missing.
  }
  const s = session;
  if (!s) return;
  if (s.config.authRequired && !s.me && !s.config.publicReads) {
    signInPage(main);
    focusMain(fromNavigation);
    return;
  }
  const ctx: Ctx = {
    config: s.config,
    me: s.me,
    canMutate: canMutate(s),
    signal: ac.signal,
    navStart,
    navigate,
    setTrail,
    setShortcuts: setPageShortcuts,
    flash: (m) => {
      flashMessage = m;
    },
    takeFlash: () => {
      const m = flashMessage;
      flashMessage = null;
      return m;
    },
  };
  const r = parseRoute(location.pathname);
  switch (r.name) {
    case "repos":
      reposPage(main, ctx);
      break;
    case "repo":
      repoPage(main, r.repoID, ctx);
      break;
    case "branch":
      branchPage(main, r.repoID, r.branch, ctx);
      break;
    case "syncs":
      syncsPage(main, r.repoID, ctx);
      break;
    default:
      notFoundPage(main);
  }
  focusMain(fromNavigation);
}

// After a navigation the page's heading takes the focus (screen readers
// announce the new page); on the first load the focus stays at the top.
function focusMain(fromNavigation: boolean): void {
  if (!fromNavigation) return;
  window.scrollTo(0, 0);
  const h1 = main.querySelector<HTMLElement>("h1");
  (h1 ?? main).focus({ preventScroll: true });
}

// Same-origin links marked data-nav are handled here (no reload).
function interceptLinks(): void {
  document.addEventListener("click", (ev) => {
    if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const a = ev.target instanceof Element ? ev.target.closest("a") : null;
    if (!a || a.dataset["nav"] === undefined || a.target) return;
    const url = new URL(a.href, location.origin);
    if (url.origin !== location.origin) return;
    ev.preventDefault();
    if (url.pathname === location.pathname && url.search === location.search) return;
    navigate(url.pathname + url.search + url.hash);
  });
  window.addEventListener("popstate", () => route(true));
}

async function boot(): Promise<void> {
  shell();
  replace(main, loading("stackd"));
  let config: ServerConfig;
  try {
    const a = await call("get", "/api/v1/config", {});
    if (!a.data) throw new Error("the server sent no configuration");
    config = a.data;
  } catch (e) {
    replace(main, errorBox(e, () => void boot()));
    return;
  }
  let me: Me | null = null;
  // Where the server has users, ask who is calling, unless the answer is
  // known: a caller the server refuses onboarding on a server that is not
  // read-only is anonymous (and /api/v1/me would answer 401).
  if (config.authRequired && (config.onboarding || config.readOnly)) {
    try {
      me = (await call("get", "/api/v1/me", {})).data ?? null;
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) {
        replace(main, errorBox(e, () => void boot()));
        return;
      }
    }
  }
  session = { config, me };
  renderAccount(session);
  route(false);
}

// A 401 means the session ended (expired, signed out elsewhere): show the
// sign-in page where reads are private; elsewhere the header offers sign-in.
onUnauthorized(() => {
  const s = session;
  if (!s || !s.config.authRequired) return;
  if (s.me !== null) {
    s.me = null;
    renderAccount(s);
  }
  if (!s.config.publicReads) route(false);
});

setGlobalShortcuts([
  { keys: "?", description: "Show the keyboard shortcuts", run: showShortcuts },
  { keys: "g r", description: "Go to the repositories", run: () => navigate(reposPath()) },
]);
installShortcuts();
interceptLinks();
void boot();

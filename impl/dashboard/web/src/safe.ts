// Checks for values that come from outside the app: URLs from remotes (PR
// links), return paths for sign-in, and Link headers.

/**
 * The URL to link to when s is an absolute http(s) URL, else null: PR URLs
 * come from metadata anyone may push, so javascript:, data: and the like are
 * shown as text, never as links. The answer is the URL as the URL parser
 * serialises it (no credentials are kept).
 */
export function httpURL(s: string | null | undefined): string | null {
  if (typeof s !== "string" || s.length === 0 || s.length > 4096) return null;
  // Control characters and spaces are never part of a URL we link.
  if (/[\u0000-\u0020\u007f-\u009f]/.test(s)) return null;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return null;
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return null;
  if (u.hostname === "" || u.username !== "" || u.password !== "") return null;
  return u.href;
}

/**
 * A path on this origin to return to after sign-in, or "/" when ret is not
 * one. The same rules as the server's (impl/auth safeReturn), and checked
 * against origin after resolution: only "/..." paths, never "//host",
 * backslashes, control characters or another origin.
 */
export function safeReturnPath(ret: string | null | undefined, origin: string): string {
  if (typeof ret !== "string" || ret.length === 0 || ret.length > 2048) return "/";
  if (ret[0] !== "/" || ret.startsWith("//") || /[\\\u0000-\u001f\u007f]/.test(ret)) return "/";
  let u: URL;
  try {
    u = new URL(ret, origin);
  } catch {
    return "/";
  }
  if (u.origin !== origin) return "/";
  return u.pathname + u.search + u.hash;
}

/**
 * The URL of rel="next" in an RFC 8288 Link header, when it is a path of this
 * origin's API (the sync history's paging), else null.
 */
export function nextLink(header: string | null, origin: string): string | null {
  if (!header) return null;
  for (const part of splitLinks(header)) {
    const m = /^\s*<([^>]*)>\s*(.*)$/.exec(part);
    if (!m) continue;
    const target = m[1] ?? "";
    const params = m[2] ?? "";
    const rels = /(?:^|;)\s*rel\s*=\s*(?:"([^"]*)"|([^\s;]+))/i.exec(params);
    const rel = rels ? (rels[1] ?? rels[2] ?? "") : "";
    if (!rel.toLowerCase().split(/\s+/).includes("next")) continue;
    let u: URL;
    try {
      u = new URL(target, origin);
    } catch {
      return null;
    }
    if (u.origin !== origin || !u.pathname.startsWith("/api/v1/")) return null;
    return u.pathname + u.search;
  }
  return null;
}

// splitLinks splits a Link header on the commas between links (not those
// inside <...> or quotes).
function splitLinks(header: string): string[] {
  const out: string[] = [];
  let cur = "";
  let inURL = false;
  let inQuote = false;
  for (const ch of header) {
    if (ch === "<" && !inQuote) inURL = true;
    else if (ch === ">" && !inQuote) inURL = false;
    else if (ch === '"' && !inURL) inQuote = !inQuote;
    if (ch === "," && !inURL && !inQuote) {
      out.push(cur);
      cur = "";
      continue;
    }
    cur += ch;
  }
  out.push(cur);
  return out;
}

/** Seconds from a Retry-After header (delta-seconds or an HTTP date), null when absent or invalid. */
export function retryAfterSeconds(v: string | null, now: number): number | null {
  if (v === null) return null;
  const s = v.trim();
  if (/^\d+$/.test(s)) return Math.min(Number(s), 24 * 3600);
  const t = Date.parse(s);
  if (Number.isNaN(t)) return null;
  return Math.max(0, Math.min(Math.ceil((t - now) / 1000), 24 * 3600));
}

// Characters that are invisible or reorder the text around them: C0 and C1
// controls (but tab), zero-width characters, bidirectional overrides and
// isolates, the byte order mark.
const invisible = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/;
const invisibleAll = new RegExp(invisible.source, "g");

/**
 * s with its invisible and direction-changing characters spelled out
 * (\n, \u202e), so that a branch name such as "evil/<U+202E>txt.exe" cannot
 * pass for "evil/exe.txt", nor a diff line hide what it does (Trojan Source).
 * Every text node the app makes goes through it (dom.ts).
 */
export function visible(s: string): string {
  if (!invisible.test(s)) return s;
  return s.replace(invisibleAll, (ch) => {
    if (ch === "\n") return "\\n";
    if (ch === "\r") return "\\r";
    return `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
}

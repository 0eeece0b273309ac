// A parser for the patches of GET .../branches/{branch}/diff: the format of
// `git diff --full-index -M100%`, with stackd's marker lines for files not
// shown ("stackd: diff not shown, ..."). Pure: no DOM.

export type LineKind = "add" | "del" | "ctx" | "meta";

export interface DiffLine {
  kind: LineKind;
  /** The line without its +, - or space prefix ("\ No newline at end of file" for meta). */
  text: string;
  oldNo: number | null;
  newNo: number | null;
}

export interface Hunk {
  header: string;
  lines: DiffLine[];
}

export type FileStatus = "added" | "deleted" | "modified" | "renamed" | "copied";

export interface DiffFile {
  /** The path before the change; null for a created file. */
  oldPath: string | null;
  /** The path after the change; null for a deleted file. */
  newPath: string | null;
  status: FileStatus;
  binary: boolean;
  /** The extended header lines (mode, index, similarity, ...), as sent. */
  header: string[];
  /** stackd's marker when the content is not shown, e.g. "diff not shown, file larger than 1048576 bytes: ...". */
  notShown: string | null;
  hunks: Hunk[];
  added: number;
  removed: number;
}

export const markerPrefix = "stackd: diff not shown";

/** Parses a patch into files. Anything it does not recognise outside a hunk is kept as a header line. */
export function parsePatch(patch: string): DiffFile[] {
  const files: DiffFile[] = [];
  const lines = patch.split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  let file: DiffFile | null = null;
  let hunk: Hunk | null = null;
  let oldLeft = 0;
  let newLeft = 0;
  let oldNo = 0;
  let newNo = 0;
  let gitPaths: [string | null, string | null] = [null, null];

  const finish = () => {
    if (file === null) return;
    if (file.oldPath === null && file.newPath === null) {
      file.oldPath = gitPaths[0];
      file.newPath = gitPaths[1];
      if (file.status === "added") file.oldPath = null;
      if (file.status === "deleted") file.newPath = null;
    }
    if (file.status === "modified" && file.oldPath !== null && file.newPath !== null && file.oldPath !== file.newPath) {
      file.status = "renamed";
    }
    files.push(file);
  };

  for (let i = 0; i < lines.length; i++) {
    let line = lines[i] ?? "";
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (hunk !== null && file !== null && (oldLeft > 0 || newLeft > 0)) {
      const c = line.charCodeAt(0);
      if (c === 43 /* + */ && newLeft > 0) {
        hunk.lines.push({ kind: "add", text: line.slice(1), oldNo: null, newNo: newNo++ });
        newLeft--;
        file.added++;
        continue;
      }
      if (c === 45 /* - */ && oldLeft > 0) {
        hunk.lines.push({ kind: "del", text: line.slice(1), oldNo: oldNo++, newNo: null });
        oldLeft--;
        file.removed++;
        continue;
      }
      if ((c === 32 /* space */ || line === "") && oldLeft > 0 && newLeft > 0) {
        hunk.lines.push({ kind: "ctx", text: line.slice(1), oldNo: oldNo++, newNo: newNo++ });
        oldLeft--;
        newLeft--;
        continue;
      }
      if (c === 92 /* \ */) {
        hunk.lines.push({ kind: "meta", text: line, oldNo: null, newNo: null });
        continue;
      }
      // Not a hunk line: the hunk was shorter than announced.
      oldLeft = 0;
      newLeft = 0;
    }
    if (line.startsWith("\\") && hunk !== null) {
      hunk.lines.push({ kind: "meta", text: line, oldNo: null, newNo: null });
      continue;
    }
    if (line.startsWith("diff --git ")) {
      finish();
      hunk = null;
      gitPaths = parseGitLine(line.slice("diff --git ".length));
      file = {
        oldPath: null,
        newPath: null,
        status: "modified",
        binary: false,
        header: [line],
        notShown: null,
        hunks: [],
        added: 0,
        removed: 0,
      };
      continue;
    }
    if (file === null) continue; // nothing before the first file
    if (line.startsWith("@@")) {
      const m = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(line);
      if (m) {
        oldNo = Number(m[1]);
        oldLeft = m[2] === undefined ? 1 : Number(m[2]);
        newNo = Number(m[3]);
        newLeft = m[4] === undefined ? 1 : Number(m[4]);
        hunk = { header: line, lines: [] };
        file.hunks.push(hunk);
        continue;
      }
    }
    if (line.startsWith(markerPrefix)) {
      file.notShown = line.slice("stackd: ".length);
      continue;
    }
    hunk = null;
    file.header.push(line);
    if (line.startsWith("new file mode")) file.status = "added";
    else if (line.startsWith("deleted file mode")) file.status = "deleted";
    else if (line.startsWith("rename from ")) {
      file.status = "renamed";
      file.oldPath = unquote(line.slice("rename from ".length));
    } else if (line.startsWith("rename to ")) {
      file.status = "renamed";
      file.newPath = unquote(line.slice("rename to ".length));
    } else if (line.startsWith("copy from ")) {
      file.status = "copied";
      file.oldPath = unquote(line.slice("copy from ".length));
    } else if (line.startsWith("copy to ")) {
      file.status = "copied";
      file.newPath = unquote(line.slice("copy to ".length));
    } else if (line.startsWith("--- ")) {
      const p = stripPrefix(unquote(trimTab(line.slice(4))), "a/");
      if (p !== null || file.status === "added") file.oldPath = p;
    } else if (line.startsWith("+++ ")) {
      const p = stripPrefix(unquote(trimTab(line.slice(4))), "b/");
      if (p !== null || file.status === "deleted") file.newPath = p;
    } else if (line.startsWith("Binary files ") || line === "GIT binary patch") {
      file.binary = true;
    }
  }
  finish();
  return files;
}

// git ends the ---/+++ path with a tab when the name has a space.
function trimTab(s: string): string {
  return s.endsWith("\t") ? s.slice(0, -1) : s;
}

function stripPrefix(p: string, prefix: string): string | null {
  if (p === "/dev/null") return null;
  return p.startsWith(prefix) ? p.slice(prefix.length) : p;
}

// parseGitLine reads the two paths of "diff --git a/x b/y" (either may be quoted).
function parseGitLine(rest: string): [string | null, string | null] {
  let a: string | null = null;
  let b: string | null = null;
  if (rest.startsWith('"')) {
    const end = quotedEnd(rest, 0);
    a = unquote(rest.slice(0, end));
    rest = rest.slice(end).trimStart();
    b = unquote(rest);
  } else if (rest.endsWith('"')) {
    const start = rest.lastIndexOf(' "');
    a = rest.slice(0, Math.max(0, start));
    b = unquote(rest.slice(start + 1));
  } else {
    // Unquoted: "a/P b/P" with the same P unless renamed; try the even split first.
    const mid = (rest.length - 1) / 2;
    if (Number.isInteger(mid) && rest[mid] === " " && rest.slice(2, mid) === rest.slice(mid + 3)) {
      a = rest.slice(0, mid);
      b = rest.slice(mid + 1);
    } else {
      const k = rest.indexOf(" b/");
      if (k >= 0) {
        a = rest.slice(0, k);
        b = rest.slice(k + 1);
      } else {
        a = rest;
        b = rest;
      }
    }
  }
  return [stripPrefix(a ?? "", "a/"), stripPrefix(b ?? "", "b/")];
}

function quotedEnd(s: string, start: number): number {
  for (let i = start + 1; i < s.length; i++) {
    if (s[i] === "\\") i++;
    else if (s[i] === '"') return i + 1;
  }
  return s.length;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false });

const escapes: Record<string, number> = { a: 7, b: 8, t: 9, n: 10, v: 11, f: 12, r: 13, '"': 34, "\\": 92 };

/** Undoes git's C-style quoting of a path ("a/caf\303\251" -> a/café); an unquoted path is returned as is. */
export function unquote(s: string): string {
  if (s.length < 2 || s[0] !== '"' || s[s.length - 1] !== '"') return s;
  const bytes: number[] = [];
  const body = s.slice(1, -1);
  for (let i = 0; i < body.length; i++) {
    const ch = body[i] ?? "";
    if (ch !== "\\") {
      for (const b of encoder.encode(ch)) bytes.push(b);
      continue;
    }
    const next = body[i + 1] ?? "";
    if (/[0-7]/.test(next)) {
      const oct = /^[0-7]{1,3}/.exec(body.slice(i + 1))?.[0] ?? "0";
      bytes.push(parseInt(oct, 8) & 0xff);
      i += oct.length;
      continue;
    }
    const e = escapes[next];
    if (e !== undefined) {
      bytes.push(e);
      i++;
      continue;
    }
    bytes.push(92);
  }
  return decoder.decode(new Uint8Array(bytes));
}

export interface Budget {
  /** Per file: how many of its lines to render (hunk headers count as lines). */
  shown: number[];
  totalLines: number;
  shownLines: number;
  cut: boolean;
}

/** Splits a line budget over the files in order: a large diff is cut, and the caller says so. */
export function budgetLines(files: DiffFile[], maxLines: number): Budget {
  let left = Math.max(0, maxLines);
  let total = 0;
  const shown: number[] = [];
  for (const f of files) {
    let n = 0;
    for (const h of f.hunks) n += 1 + h.lines.length;
    total += n;
    const s = Math.min(n, left);
    shown.push(s);
    left -= s;
  }
  const shownLines = shown.reduce((a, b) => a + b, 0);
  return { shown, totalLines: total, shownLines, cut: shownLines < total };
}

/** The path to show for a file: "old → new" for a rename or copy. */
export function displayPath(f: DiffFile): string {
  if ((f.status === "renamed" || f.status === "copied") && f.oldPath !== null && f.newPath !== null) {
    return `${f.oldPath} → ${f.newPath}`;
  }
  return f.newPath ?? f.oldPath ?? "(unknown path)";
}

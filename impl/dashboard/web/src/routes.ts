// The app's routes (History API paths; the server answers the shell for
// each): "/" repositories, "/r/{repoID}" a repository, "/r/{repoID}/b/{branch}"
// a branch (the rest of the path, each segment percent-encoded, so a branch
// may contain "/"), "/r/{repoID}/syncs" the sync history.

export type Route =
  | { name: "repos" }
  | { name: "repo"; repoID: string }
  | { name: "branch"; repoID: string; branch: string }
  | { name: "syncs"; repoID: string }
  | { name: "notfound" };

// The repository id rule of the API (parameter RepoID).
const repoIDPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function validRepoID(id: string): boolean {
  return repoIDPattern.test(id);
}

/** The route of a pathname; "notfound" for anything else. */
export function parseRoute(pathname: string): Route {
  if (pathname === "/" || pathname === "") return { name: "repos" };
  if (!pathname.startsWith("/")) return { name: "notfound" };
  let parts = pathname.slice(1).split("/");
  // One trailing slash is tolerated ("/r/x/").
  if (parts.length > 1 && parts[parts.length - 1] === "") parts = parts.slice(0, -1);
  const decoded: string[] = [];
  for (const p of parts) {
    try {
      decoded.push(decodeURIComponent(p));
    } catch {
      return { name: "notfound" };
    }
  }
  if (decoded[0] !== "r" || decoded.length < 2) return { name: "notfound" };
  const repoID = decoded[1] ?? "";
  if (!validRepoID(repoID)) return { name: "notfound" };
  if (decoded.length === 2) return { name: "repo", repoID };
  if (decoded.length === 3 && decoded[2] === "syncs") return { name: "syncs", repoID };
  if (decoded[2] === "b" && decoded.length >= 4) {
    const segs = decoded.slice(3);
    if (segs.some((s) => s === "")) return { name: "notfound" };
    const branch = segs.join("/");
    return { name: "branch", repoID, branch };
  }
  return { name: "notfound" };
}

export function reposPath(): string {
  return "/";
}

export function repoPath(repoID: string): string {
  return `/r/${encodeURIComponent(repoID)}`;
}

export function syncsPath(repoID: string): string {
  return `${repoPath(repoID)}/syncs`;
}

/** The branch page's path: each segment of the name percent-encoded. */
export function branchPath(repoID: string, branch: string): string {
  return `${repoPath(repoID)}/b/${branch.split("/").map(encodeURIComponent).join("/")}`;
}

/** The branch of a ref name that the sync result lists, when it is one (refs/heads/...). */
export function branchOfRef(ref: string): string | null {
  const p = "refs/heads/";
  return ref.startsWith(p) && ref.length > p.length ? ref.slice(p.length) : null;
}

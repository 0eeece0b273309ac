// What the app keeps between pages: the model of the last repository page
// (with its ETag, so that coming back costs a 304) and the counts of every
// repository (for the repositories page).

import type { Counts, Model } from "./model";

export interface CachedModel {
  repoID: string;
  etag: string | null;
  model: Model;
}

let last: CachedModel | null = null;
const counts = new Map<string, { etag: string | null; counts: Counts }>();

export function cachedModel(repoID: string): CachedModel | null {
  return last !== null && last.repoID === repoID ? last : null;
}

export function storeModel(c: CachedModel): void {
  last = c;
  counts.set(c.repoID, {
    etag: c.etag,
    counts: { stacks: c.model.stacks.length, branches: c.model.branchCount, needsRestack: c.model.restackCount },
  });
}

export function cachedCounts(repoID: string): { etag: string | null; counts: Counts } | null {
  return counts.get(repoID) ?? null;
}

export function storeCounts(repoID: string, etag: string | null, c: Counts): void {
  counts.set(repoID, { etag, counts: c });
}

export function forget(repoID: string): void {
  counts.delete(repoID);
  if (last?.repoID === repoID) last = null;
}

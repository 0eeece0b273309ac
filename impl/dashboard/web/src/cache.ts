// What the app keeps between pages: the model of the last repository page,
// with its ETag, so that coming back costs a 304.

import type { Model } from "./model";

export interface CachedModel {
  repoID: string;
  etag: string | null;
  model: Model;
}

let last: CachedModel | null = null;

export function cachedModel(repoID: string): CachedModel | null {
  return last !== null && last.repoID === repoID ? last : null;
}

export function storeModel(c: CachedModel): void {
  last = c;
}

export function forget(repoID: string): void {
  if (last?.repoID === repoID) last = null;
}

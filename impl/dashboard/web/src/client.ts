// The typed client of the public API. Every path, parameter, body and answer
// type comes from src/api.d.ts, which openapi-typescript generates from
// openapi.yaml: a change of the contract that this app does not follow fails
// `npm run check`.
//
// Requests go to the same origin with the browser's credentials
// ("same-origin"); every mutating call sends X-Stackd-CSRF: 1 (the gate's
// CSRF rule for cookie-authenticated and anonymous unsafe requests; the
// browser adds Origin itself). Nothing else is added: the app never asks for
// more than the gate lets through.

import type { components, paths } from "./api";
import { retryAfterSeconds } from "./safe";

export type Schemas = components["schemas"];
export type Repo = Schemas["Repo"];
export type RepoView = Schemas["RepoView"];
export type Stack = Schemas["Stack"];
export type Branch = Schemas["Branch"];
export type Commit = Schemas["Commit"];
export type PullRequest = NonNullable<Schemas["PullRequest"]>;
export type SyncResult = Schemas["SyncResult"];
export type RefUpdate = Schemas["RefUpdate"];
export type ServerConfig = Schemas["ServerConfig"];
export type Me = Schemas["Me"];
export type Problem = Schemas["Problem"];
export type RepoCreate = Schemas["RepoCreate"];
export type SyncStatus = Schemas["SyncStatus"];
export type StreamHello = Schemas["StreamHello"];
export type ViewUpdatedEvent = Schemas["ViewUpdatedEvent"];
export type BranchSwitchedEvent = Schemas["BranchSwitchedEvent"];
export type RepoRemovedEvent = Schemas["RepoRemovedEvent"];

/** The CSRF header the gate requires on unsafe requests. */
export const csrfHeader = "X-Stackd-CSRF";

type Path = keyof paths;
type Method = "get" | "post" | "delete";

// The operation of a path and method (never when the spec has none).
type Op<P extends Path, M extends Method> = paths[P] extends Record<M, infer O> ? (O extends undefined ? never : O) : never;

type PathParams<O> = O extends { parameters: { path: infer PP } } ? ([PP] extends [never] ? unknown : { path: PP }) : unknown;
type QueryParams<O> = O extends { parameters: { query?: infer Q } } ? ([Q] extends [never | undefined] ? unknown : { query?: Q }) : unknown;
type BodyParam<O> = O extends { requestBody: { content: { "application/json": infer B } } } ? { body: B } : unknown;

/** What a call takes: the operation's path parameters, query and JSON body, typed by the spec. */
export type Req<O> = PathParams<O> & QueryParams<O> & BodyParam<O> & {
  /** Sent as If-None-Match. */
  etag?: string | null;
  signal?: AbortSignal;
};

type JSONOf<R> = R extends { content: { "application/json": infer T } } ? T : undefined;
type TextOf<R> = R extends { content: infer C } ? (C extends Record<string, infer T> ? T : never) : undefined;

/** The body of the operation's success answer (200, else 201, 202; undefined for 204). */
export type Ok<O> = O extends { responses: infer R }
  ? R extends { 200: infer A }
    ? JSONOf<A>
    : R extends { 201: infer A }
      ? JSONOf<A>
      : R extends { 202: infer A }
        ? JSONOf<A>
        : undefined
  : never;

type OkText<O> = O extends { responses: { 200: infer A } } ? TextOf<A> : never;

export interface Answer<T> {
  status: number;
  /** undefined for 304 (not modified) and 204. */
  data: T | undefined;
  etag: string | null;
  headers: Headers;
}

/** A failed call: the problem (RFC 9457) when the server sent one. */
export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem | null;
  /** Seconds from Retry-After (429, 503), when sent. */
  readonly retryAfter: number | null;

  constructor(status: number, problem: Problem | null, retryAfter: number | null, message?: string) {
    super(message ?? problem?.title ?? `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }

  /** The title to show: the problem's, else a generic one. */
  get title(): string {
    if (this.problem?.title) return this.problem.title;
    if (this.status === 0) return "The server could not be reached";
    return `Request failed (HTTP ${this.status})`;
  }

  /** The detail to show, when there is one. */
  get detail(): string | null {
    if (this.problem?.detail) return this.problem.detail;
    if (this.status === 0) return this.message;
    return null;
  }
}

// Listeners of 401 answers (the app shows its sign-in page).
const unauthorizedHooks: Array<(e: ApiError) => void> = [];
export function onUnauthorized(fn: (e: ApiError) => void): void {
  unauthorizedHooks.push(fn);
}

/** Fills {name} placeholders of a path template with percent-encoded values. */
export function expandPath(template: string, params: Record<string, unknown> | undefined): string {
  return template.replace(/\{([A-Za-z0-9_]+)\}/g, (_, name: string) => {
    const v = params?.[name];
    if (v === undefined || v === null) throw new Error(`missing path parameter ${name}`);
    return encodeURIComponent(String(v));
  });
}

function queryString(q: Record<string, unknown> | undefined): string {
  if (!q) return "";
  const sp = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined || v === null) continue;
    sp.set(k, String(v));
  }
  const s = sp.toString();
  return s ? `?${s}` : "";
}

interface RawReq {
  path?: Record<string, unknown>;
  query?: Record<string, unknown>;
  body?: unknown;
  etag?: string | null;
  signal?: AbortSignal;
}

async function send(method: Method, url: string, r: RawReq, accept: string): Promise<Response> {
  const headers: Record<string, string> = { Accept: `${accept}, application/problem+json` };
  if (r.etag) headers["If-None-Match"] = r.etag;
  if (method !== "get") headers[csrfHeader] = "1";
  let body: string | undefined;
  if (r.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(r.body);
  }
  const init: RequestInit = {
    method: method.toUpperCase(),
    headers,
    credentials: "same-origin",
    // The app keeps what it needs (with the ETag); the HTTP cache would only
    // keep a second copy of large views.
    cache: "no-store",
    redirect: "error",
  };
  if (body !== undefined) init.body = body;
  if (r.signal) init.signal = r.signal;
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    throw new ApiError(0, null, null, e instanceof Error ? e.message : String(e));
  }
  if (res.ok || res.status === 304) return res;
  throw await errorOf(res);
}

/** The ApiError of a failed answer, with its problem when it is problem+json. */
export async function errorOf(res: Response): Promise<ApiError> {
  let problem: Problem | null = null;
  const ct = res.headers.get("Content-Type") ?? "";
  if (ct.includes("json")) {
    try {
      const p: unknown = await res.json();
      if (isProblem(p)) problem = p;
    } catch {
      problem = null;
    }
  }
  const err = new ApiError(res.status, problem, retryAfterSeconds(res.headers.get("Retry-After"), Date.now()));
  if (res.status === 401) for (const fn of unauthorizedHooks) fn(err);
  return err;
}

function isProblem(p: unknown): p is Problem {
  if (typeof p !== "object" || p === null) return false;
  const o = p as Record<string, unknown>;
  return typeof o["title"] === "string" && typeof o["status"] === "number";
}

/** Calls an operation of the API and decodes its JSON answer. */
export async function call<P extends Path, M extends Method>(
  method: M,
  path: P,
  req: Req<Op<P, M>>,
): Promise<Answer<Ok<Op<P, M>>>> {
  const r = req as RawReq;
  const url = expandPath(path, r.path) + queryString(r.query);
  return callURL<Ok<Op<P, M>>>(method, url, r);
}

/** Like call, for a URL the server handed out (a Link header's next page). */
export async function callURL<T>(method: Method, url: string, r: RawReq = {}): Promise<Answer<T>> {
  const res = await send(method, url, r, "application/json");
  const etag = res.headers.get("ETag");
  if (res.status === 204 || res.status === 304) return { status: res.status, data: undefined, etag, headers: res.headers };
  const data = (await res.json()) as T;
  return { status: res.status, data, etag, headers: res.headers };
}

/** Calls an operation whose answer is text (the branch diff, text/x-patch). */
export async function callText<P extends Path>(
  path: P,
  req: Req<Op<P, "get">>,
  accept: string,
): Promise<Answer<OkText<Op<P, "get">>>> {
  const r = req as RawReq;
  const url = expandPath(path, r.path) + queryString(r.query);
  const res = await send("get", url, r, accept);
  const etag = res.headers.get("ETag");
  if (res.status === 304) return { status: 304, data: undefined, etag, headers: res.headers };
  const text = await res.text();
  return { status: res.status, data: text as unknown as OkText<Op<P, "get">>, etag, headers: res.headers };
}

/** The events path of a repository (typed against the spec: a rename breaks the check). */
export function eventsURL(repoID: string, lastEventId: string | null): string {
  const p: Path = "/api/v1/repos/{repoID}/events";
  const q: Op<"/api/v1/repos/{repoID}/events", "get">["parameters"]["query"] = lastEventId ? { lastEventId } : undefined;
  return expandPath(p, { repoID }) + queryString(q);
}

/** The sign-in URL with its return path (the server takes `return` and keeps only local paths). */
export function loginURL(returnPath: string): string {
  const p: Path = "/auth/login";
  const q: Op<"/auth/login", "get">["parameters"]["query"] = { return: returnPath };
  return p + queryString(q);
}

/** The raw patch URL of a branch (a link for the full diff when the page cuts it). */
export function diffURL(repoID: string, branch: string): string {
  const p: Path = "/api/v1/repos/{repoID}/branches/{branch}/diff";
  return expandPath(p, { repoID, branch });
}

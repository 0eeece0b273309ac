// The client against a real HTTP server (node:http on loopback): the headers
// it sends (If-None-Match, X-Stackd-CSRF on mutations only, JSON bodies) and
// how it reads answers (304, problems, Retry-After).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { ApiError, callURL, expandPath, onUnauthorized } from "../src/client";

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

let server: http.Server;
let base = "";
const seen: Seen[] = [];

before(async () => {
  server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
      const u = new URL(req.url ?? "/", "http://x");
      switch (u.pathname) {
        case "/view":
          if (req.headers["if-none-match"] === '"v1"') {
            res.writeHead(304, { ETag: '"v1"' }).end();
          } else {
            res.writeHead(200, { "Content-Type": "application/json", ETag: '"v1"' }).end('{"version":1}');
          }
          return;
        case "/sync":
          res.writeHead(200, { "Content-Type": "application/json" }).end('{"ok":true}');
          return;
        case "/limited":
          res
            .writeHead(429, { "Content-Type": "application/problem+json", "Retry-After": "3" })
            .end('{"type":"/problems/too-many-requests","title":"Too Many Requests","status":429,"detail":"retry in 3 seconds"}');
          return;
        case "/gone":
          res.writeHead(401, { "Content-Type": "application/problem+json" }).end('{"type":"/problems/unauthorized","title":"Unauthorized","status":401}');
          return;
        case "/html":
          res.writeHead(502, { "Content-Type": "text/html" }).end("<html>proxy error</html>");
          return;
        case "/empty":
          res.writeHead(204).end();
          return;
      }
      res.writeHead(404).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => {
  server.close();
});

test("GET sends If-None-Match and reads 200 and 304", async () => {
  const a = await callURL<{ version: number }>("get", `${base}/view`);
  assert.equal(a.status, 200);
  assert.deepEqual(a.data, { version: 1 });
  assert.equal(a.etag, '"v1"');
  const b = await callURL<{ version: number }>("get", `${base}/view`, { etag: a.etag });
  assert.equal(b.status, 304);
  assert.equal(b.data, undefined);
  const last = seen[seen.length - 1]!;
  assert.equal(last.headers["if-none-match"], '"v1"');
  assert.equal(last.headers["x-stackd-csrf"], undefined, "a read sends no CSRF header");
});

test("mutations send X-Stackd-CSRF and a JSON body", async () => {
  await callURL("post", `${base}/sync`, { body: { url: "https://example.com/r.git" } });
  const last = seen[seen.length - 1]!;
  assert.equal(last.method, "POST");
  assert.equal(last.headers["x-stackd-csrf"], "1");
  assert.equal(last.headers["content-type"], "application/json");
  assert.deepEqual(JSON.parse(last.body), { url: "https://example.com/r.git" });
  const d = await callURL("delete", `${base}/empty`);
  assert.equal(d.status, 204);
  assert.equal(seen[seen.length - 1]!.headers["x-stackd-csrf"], "1");
});

test("problems become ApiError with title, detail and Retry-After", async () => {
  await assert.rejects(callURL("post", `${base}/limited`), (e: unknown) => {
    assert.ok(e instanceof ApiError);
    assert.equal(e.status, 429);
    assert.equal(e.title, "Too Many Requests");
    assert.equal(e.detail, "retry in 3 seconds");
    assert.equal(e.retryAfter, 3);
    return true;
  });
  await assert.rejects(callURL("get", `${base}/html`), (e: unknown) => {
    assert.ok(e instanceof ApiError);
    assert.equal(e.problem, null);
    assert.equal(e.title, "Request failed (HTTP 502)");
    return true;
  });
});

test("401 answers reach the sign-in hook", async () => {
  let heard = 0;
  onUnauthorized(() => heard++);
  await assert.rejects(callURL("get", `${base}/gone`), ApiError);
  assert.equal(heard, 1);
});

test("a server that cannot be reached is status 0", async () => {
  await assert.rejects(callURL("get", "http://127.0.0.1:1/x"), (e: unknown) => {
    assert.ok(e instanceof ApiError);
    assert.equal(e.status, 0);
    assert.equal(e.title, "The server could not be reached");
    return true;
  });
});

test("expandPath percent-encodes each parameter as one segment", () => {
  assert.equal(expandPath("/api/v1/repos/{repoID}/branches/{branch}", { repoID: "local", branch: "feat/x y#?" }), "/api/v1/repos/local/branches/feat%2Fx%20y%23%3F");
  assert.throws(() => expandPath("/api/v1/repos/{repoID}", {}));
});

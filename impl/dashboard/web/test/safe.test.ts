import { test } from "node:test";
import assert from "node:assert/strict";
import { httpURL, nextLink, retryAfterSeconds, safeReturnPath, visible } from "../src/safe";

test("httpURL links only http(s)", () => {
  assert.equal(httpURL("https://github.com/o/r/pull/1"), "https://github.com/o/r/pull/1");
  assert.equal(httpURL("http://example.com/x"), "http://example.com/x");
  assert.equal(httpURL("HTTPS://Example.com/x"), "https://example.com/x");
  for (const bad of [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:x",
    "file:///etc/passwd",
    "//evil.example/x",
    "/relative/path",
    "https://user:pw@example.com/",
    "https://exa mple.com/",
    "https://example.com/\n",
    "",
    "https://",
  ]) {
    assert.equal(httpURL(bad), null, bad);
  }
  assert.equal(httpURL(undefined), null);
  assert.equal(httpURL(null), null);
});

test("safeReturnPath keeps same-origin paths only", () => {
  const o = "https://stackd.example.com";
  assert.equal(safeReturnPath("/r/local/b/feat/x?q=1#h", o), "/r/local/b/feat/x?q=1#h");
  assert.equal(safeReturnPath("/", o), "/");
  for (const bad of [
    "//evil.example/",
    "/\\evil.example/",
    "\\\\evil.example",
    "https://evil.example/",
    "javascript:alert(1)",
    "r/local",
    "/\tfoo",
    "/foo\nbar",
    "",
    "/" + "a".repeat(3000),
  ]) {
    assert.equal(safeReturnPath(bad, o), "/", JSON.stringify(bad));
  }
  assert.equal(safeReturnPath(null, o), "/");
});

test("nextLink follows rel=next on this origin's API", () => {
  const o = "http://127.0.0.1:8080";
  assert.equal(
    nextLink('</api/v1/repos/x/syncs?limit=50&cursor=0190b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b>; rel="next"', o),
    "/api/v1/repos/x/syncs?limit=50&cursor=0190b3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b",
  );
  assert.equal(nextLink('<http://127.0.0.1:8080/api/v1/repos/x/syncs?cursor=a>; rel=next', o), "/api/v1/repos/x/syncs?cursor=a");
  assert.equal(nextLink('</a>; rel="prev", </api/v1/repos/x/syncs?cursor=b>; rel="next"', o), "/api/v1/repos/x/syncs?cursor=b");
  assert.equal(nextLink('<https://evil.example/api/v1/x>; rel="next"', o), null);
  assert.equal(nextLink('</elsewhere>; rel="next"', o), null);
  assert.equal(nextLink('</api/v1/repos/x/syncs>; rel="prev"', o), null);
  assert.equal(nextLink(null, o), null);
});

test("retryAfterSeconds", () => {
  const now = Date.parse("2026-01-10T12:00:00Z");
  assert.equal(retryAfterSeconds("3", now), 3);
  assert.equal(retryAfterSeconds(" 0 ", now), 0);
  assert.equal(retryAfterSeconds("Sat, 10 Jan 2026 12:00:05 GMT", now), 5);
  assert.equal(retryAfterSeconds("soon", now), null);
  assert.equal(retryAfterSeconds(null, now), null);
  assert.equal(retryAfterSeconds("999999999", now), 86400);
});

test("visible spells out invisible and bidi characters", () => {
  assert.equal(visible("feat/x"), "feat/x");
  assert.equal(visible("evil/\u202etxt.exe"), "evil/\\u202etxt.exe");
  assert.equal(visible("a\u200bb\u2066c\ufeff"), "a\\u200bb\\u2066c\\ufeff");
  assert.equal(visible("line\nbreak\r"), "line\\nbreak\\r");
  assert.equal(visible("keep\ttabs"), "keep\ttabs");
  assert.equal(visible("\u0000\u001b[31m"), "\\u0000\\u001b[31m");
  assert.equal(visible("café ünïcode 日本"), "café ünïcode 日本");
  // Twice gives the same: the answer has nothing left to spell out.
  assert.equal(visible(visible("x\u202ey")), "x\\u202ey");
});

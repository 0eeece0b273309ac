import { test } from "node:test";
import assert from "node:assert/strict";
import { branchOfRef, branchPath, parseRoute, repoPath, syncsPath } from "../src/routes";

test("parseRoute", () => {
  assert.deepEqual(parseRoute("/"), { name: "repos" });
  assert.deepEqual(parseRoute("/r/local"), { name: "repo", repoID: "local" });
  assert.deepEqual(parseRoute("/r/local/"), { name: "repo", repoID: "local" });
  assert.deepEqual(parseRoute("/r/local/syncs"), { name: "syncs", repoID: "local" });
  assert.deepEqual(parseRoute("/r/local/b/feat/x"), { name: "branch", repoID: "local", branch: "feat/x" });
  assert.deepEqual(parseRoute("/r/local/b/feat%2Fx"), { name: "branch", repoID: "local", branch: "feat/x" });
  assert.deepEqual(parseRoute("/r/local/b/caf%C3%A9/%23%3F%25"), { name: "branch", repoID: "local", branch: "café/#?%" });
  for (const p of ["/x", "/r", "/r/", "/r/-bad", "/r/local/b", "/r/local/b/", "/r/local/b/a//b", "/r/local/nope", "/r/%E0%A4%A", "/r/a/syncs/x"]) {
    assert.deepEqual(parseRoute(p), { name: "notfound" }, p);
  }
});

test("paths round-trip", () => {
  for (const name of ["main", "feat/x", "a/b/c", "café", "we#ird?na%me", "<script>alert(1)</script>"]) {
    const p = branchPath("local", name);
    assert.ok(!p.includes("?") && !p.includes("#"), p);
    assert.deepEqual(parseRoute(p), { name: "branch", repoID: "local", branch: name });
  }
  assert.equal(branchPath("local", "feat/x"), "/r/local/b/feat/x");
  assert.equal(repoPath("a.b_c-d"), "/r/a.b_c-d");
  assert.equal(syncsPath("local"), "/r/local/syncs");
});

test("branchOfRef", () => {
  assert.equal(branchOfRef("refs/heads/feat/x"), "feat/x");
  assert.equal(branchOfRef("refs/stackit/metadata/x"), null);
  assert.equal(branchOfRef("refs/heads/"), null);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { budgetLines, displayPath, parsePatch, unquote } from "../src/diff";

const gitPatch = readFileSync(new URL("../test/fixtures/git.patch", import.meta.url), "utf8");

test("parsePatch reads what git diff prints", () => {
  const files = parsePatch(gitPatch);
  assert.deepEqual(
    files.map((f) => [f.status, f.oldPath, f.newPath, f.binary, f.added, f.removed]),
    [
      ["modified", "a.txt", "a.txt", false, 2, 1],
      ["added", null, "b.bin", true, 0, 0],
      ["added", null, "café tab\t.txt", false, 1, 0],
      ["deleted", "del.txt", null, false, 0, 1],
      ["renamed", "old.txt", "new.txt", false, 0, 0],
    ],
  );
  const a = files[0]!;
  assert.equal(a.hunks.length, 1);
  assert.deepEqual(
    a.hunks[0]!.lines.map((l) => [l.kind, l.text, l.oldNo, l.newNo]),
    [
      ["ctx", "one", 1, 1],
      ["del", "two", 2, null],
      ["add", "2", null, 2],
      ["ctx", "three", 3, 3],
      ["add", "four", null, 4],
      ["meta", "\\ No newline at end of file", null, null],
    ],
  );
  assert.equal(displayPath(files[4]!), "old.txt → new.txt");
  assert.equal(displayPath(files[3]!), "del.txt");
});

test("parsePatch keeps stackd's not-shown markers", () => {
  const patch = [
    "diff --git a/data.json b/data.json",
    "index 1111111111111111111111111111111111111111..2222222222222222222222222222222222222222 100644",
    "Binary files a/data.json and b/data.json differ",
    "stackd: diff not shown, file larger than 1048576 bytes: old 2097152 bytes; new 2097170 bytes",
    "diff --git a/small.txt b/small.txt",
    "index 3333333333333333333333333333333333333333..4444444444444444444444444444444444444444 100644",
    "--- a/small.txt",
    "+++ b/small.txt",
    "@@ -1 +1 @@",
    "-a",
    "+b",
    "diff --git a/more.txt b/more.txt",
    "index 5555555555555555555555555555555555555555..6666666666666666666666666666666666666666 100644",
    "stackd: diff not shown, 12 more changed files, patch larger than 8388608 bytes",
    "",
  ].join("\n");
  const files = parsePatch(patch);
  assert.equal(files.length, 3);
  assert.equal(files[0]!.notShown, "diff not shown, file larger than 1048576 bytes: old 2097152 bytes; new 2097170 bytes");
  assert.equal(files[0]!.binary, true);
  assert.equal(files[0]!.newPath, "data.json");
  assert.equal(files[1]!.notShown, null);
  assert.equal(files[1]!.added, 1);
  assert.equal(files[2]!.notShown, "diff not shown, 12 more changed files, patch larger than 8388608 bytes");
  assert.equal(files[2]!.newPath, "more.txt");
});

test("parsePatch: hunk content that looks like headers stays content", () => {
  const patch = [
    "diff --git a/x b/x",
    "index 1..2 100644",
    "--- a/x",
    "+++ b/x",
    "@@ -1,2 +1,2 @@",
    "--- a/not-a-header",
    "+++ b/not-a-header",
    "-diff --git a/y b/y",
    "+@@ -1 +1 @@",
    "",
  ].join("\n");
  const files = parsePatch(patch);
  assert.equal(files.length, 1);
  const lines = files[0]!.hunks[0]!.lines;
  assert.deepEqual(lines.map((l) => [l.kind, l.text]), [
    ["del", "-- a/not-a-header"],
    ["add", "++ b/not-a-header"],
    ["del", "diff --git a/y b/y"],
    ["add", "@@ -1 +1 @@"],
  ]);
});

test("parsePatch of an empty patch", () => {
  assert.deepEqual(parsePatch(""), []);
  assert.deepEqual(parsePatch("garbage\n"), []);
});

test("unquote", () => {
  assert.equal(unquote('"a/caf\\303\\251"'), "a/café");
  assert.equal(unquote('"a\\tb\\"c\\\\d\\n"'), 'a\tb"c\\d\n');
  assert.equal(unquote("plain"), "plain");
});

test("budgetLines cuts a large diff", () => {
  const mk = (n: number) => ["diff --git a/f b/f", "--- a/f", "+++ b/f", `@@ -0,0 +1,${n} @@`, ...Array.from({ length: n }, (_, i) => `+${i}`)];
  const files = parsePatch([...mk(10), ...mk(10), ...mk(10), ""].join("\n"));
  const b = budgetLines(files, 15);
  assert.deepEqual(b.shown, [11, 4, 0]);
  assert.equal(b.totalLines, 33);
  assert.equal(b.cut, true);
  assert.equal(budgetLines(files, 100).cut, false);
});

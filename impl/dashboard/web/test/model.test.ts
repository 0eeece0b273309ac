import { test } from "node:test";
import assert from "node:assert/strict";
import type { Branch, RepoView } from "../src/client";
import { buildModel, filterStacks, groupByAuthor, matches, parseQuery, stackStatus, switchHead } from "../src/model";

function br(name: string, parent: string, depth: number, o: Partial<Branch> = {}): Branch {
  return {
    name,
    sha: "0".repeat(40),
    parent,
    parentSource: "stackit",
    children: [],
    depth,
    isCurrent: false,
    needsRestack: false,
    commits: [{ sha: "1".repeat(40), subject: `${name} work`, author: "Ada", date: "2026-01-01T00:00:00Z" }],
    ...o,
  };
}

function view(): RepoView {
  return {
    repo: { id: "local", kind: "local", trunk: "main", viewVersion: 3, currentBranch: "b1" },
    version: 3,
    builtAt: "2026-01-10T00:00:00Z",
    recentlyMerged: [],
    stacks: [
      {
        id: "old",
        root: "a1",
        title: "old stack",
        branches: [
          br("a1", "main", 1, { pr: { number: 10, title: "Fix parser", state: "OPEN" }, children: ["a2"] }),
          br("a2", "a1", 2, { pr: { number: 11, title: "Faster <b>", state: "OPEN", isDraft: true } }),
        ],
      },
      {
        id: "new",
        root: "b1",
        title: "new stack",
        branches: [
          br("b1", "main", 1, {
            isCurrent: true,
            needsRestack: true,
            pr: { number: 20, title: "Feature", state: "OPEN" },
            commits: [
              { sha: "2".repeat(40), subject: "newer", author: "Grace", date: "2026-01-05T00:00:00Z" },
              { sha: "3".repeat(40), subject: "older", author: "Linus", date: "2026-01-04T00:00:00Z" },
            ],
          }),
          br("feat/b2", "b1", 2, { commits: [] }),
        ],
      },
    ],
  };
}

test("buildModel sorts stacks by last activity and sets statuses", () => {
  const m = buildModel(view());
  assert.deepEqual(m.stacks.map((s) => s.root), ["b1", "a1"]);
  assert.deepEqual(m.stacks.map((s) => s.status), ["needs-restack", "draft"]);
  assert.equal(m.branchCount, 4);
  assert.equal(m.restackCount, 1);
  const b1 = m.byName.get("b1")!;
  assert.equal(b1.commitCount, 2);
  assert.equal(b1.newest?.subject, "newer");
  assert.equal(b1.author, "Grace");
  assert.equal(m.byName.get("feat/b2")!.newest, null);
});

test("stackStatus order", () => {
  assert.equal(stackStatus(1, 1, 1), "needs-restack");
  assert.equal(stackStatus(0, 1, 1), "no-pr");
  assert.equal(stackStatus(0, 0, 1), "draft");
  assert.equal(stackStatus(0, 0, 0), "ready");
});

test("filter matches name, PR number, author and title", () => {
  const m = buildModel(view());
  const names = (q: string) => {
    const f = filterStacks(m.stacks, parseQuery(q));
    const all = m.stacks.flatMap((s) => s.branches);
    const out = all.filter((b) => f.hit?.(b)).map((b) => b.name).sort();
    assert.equal(out.length, f.hitCount);
    return out;
  };
  assert.deepEqual(names("FEAT/"), ["feat/b2"]);
  assert.deepEqual(names("#11"), ["a2"]);
  assert.deepEqual(names("#1"), []);
  assert.deepEqual(names("20"), ["b1"]);
  assert.deepEqual(names("linus"), ["b1"]);
  assert.deepEqual(names("parser"), ["a1"]);
  assert.deepEqual(names("<b>"), ["a2"]);
  assert.deepEqual(names("ada work"), []);
  assert.deepEqual(names("ada a"), ["a1", "a2"]);
  assert.equal(filterStacks(m.stacks, parseQuery("  ")).hit, null);
  assert.deepEqual(filterStacks(m.stacks, parseQuery("grace")).stacks.map((s) => s.root), ["b1"]);
  assert.equal(matches(m.byName.get("a1")!, parseQuery("fix 10")), true);
});

test("groupByAuthor", () => {
  const m = buildModel(view());
  const g = groupByAuthor(m.stacks, null);
  assert.deepEqual(g.map((x) => [x.author, x.branches.map((b) => b.name)]), [
    ["Grace", ["b1"]],
    ["Ada", ["a1", "a2"]],
    ["", ["feat/b2"]],
  ]);
  const f = filterStacks(m.stacks, parseQuery("a2"));
  assert.deepEqual(groupByAuthor(f.stacks, f.hit).map((x) => x.author), ["Ada"]);
  // An earlier run's matches do not count in a later one.
  filterStacks(m.stacks, parseQuery("a1"));
  const second = filterStacks(m.stacks, parseQuery("b1"));
  assert.equal(second.hit?.(m.byName.get("a1")!), false);
  assert.equal(second.hit?.(m.byName.get("b1")!), true);
});

test("counts and switchHead", () => {
  const m = buildModel(view());
  assert.deepEqual([m.stacks.length, m.branchCount, m.restackCount], [2, 4, 1]);
  switchHead(m, "b1", "a2");
  assert.equal(m.byName.get("b1")!.isCurrent, false);
  assert.equal(m.byName.get("a2")!.isCurrent, true);
  assert.equal(m.currentBranch, "a2");
  switchHead(m, "a2", "");
  assert.equal(m.currentBranch, null);
  assert.equal([...m.byName.values()].some((b) => b.isCurrent), false);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { absoluteTime, formatDuration, parseTime, relativeTime } from "../src/time";

const now = Date.parse("2026-01-10T12:00:00Z");

test("relativeTime", () => {
  const cases: Array<[number, string]> = [
    [now, "just now"],
    [now - 30_000, "just now"],
    [now - 50_000, "1 min ago"],
    [now - 5 * 60_000, "5 min ago"],
    [now - 3 * 3600_000, "3 h ago"],
    [now - 24 * 3600_000, "1 day ago"],
    [now - 3 * 24 * 3600_000, "3 days ago"],
    [now - 65 * 24 * 3600_000, "2 months ago"],
    [now - 800 * 24 * 3600_000, "2 years ago"],
    [now + 2 * 60_000, "in 2 min"],
    [now + 10_000, "in a moment"],
    [NaN, "unknown"],
  ];
  for (const [t, want] of cases) assert.equal(relativeTime(t, now), want, `t=${now - t}`);
});

test("parseTime", () => {
  assert.equal(parseTime("2026-01-10T12:00:00Z"), now);
  assert.ok(Number.isNaN(parseTime(null)));
  assert.ok(Number.isNaN(parseTime("not a date")));
});

test("formatDuration", () => {
  const cases: Array<[number | null, string]> = [
    [null, "—"],
    [-1, "—"],
    [0, "0 ms"],
    [850, "850 ms"],
    [4200, "4.2 s"],
    [42_000, "42 s"],
    [185_000, "3 min 5 s"],
    [180_000, "3 min"],
    [2 * 3600_000 + 3 * 60_000, "2 h 3 min"],
  ];
  for (const [ms, want] of cases) assert.equal(formatDuration(ms), want, String(ms));
});

test("absoluteTime ends with the UTC instant", () => {
  assert.match(absoluteTime(now), /\(2026-01-10T12:00:00\.000Z\)$/);
  assert.equal(absoluteTime(NaN), "unknown time");
});

// Hostile data is rendered as text only: no source file of the app uses an
// HTML sink or evaluates strings. This test reads the sources.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const src = fileURLToPath(new URL("../src/", import.meta.url));

function files(dir: string): string[] {
  const out: string[] = [];
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else if (p.endsWith(".ts") && !p.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

test("no HTML sinks or string evaluation in the app", () => {
  const forbidden = [
    /\.innerHTML\b/,
    /\.outerHTML\b/,
    /insertAdjacentHTML/,
    /document\.write/,
    /\beval\s*\(/,
    /new\s+Function\s*\(/,
    /createContextualFragment/,
    /DOMParser/,
    /setAttribute\(\s*["']style["']/,
    /setAttribute\(\s*["']on/,
    /srcdoc/,
    /setTimeout\(\s*["'`]/,
  ];
  const all = files(src);
  assert.ok(all.length > 5, "sources found");
  for (const f of all) {
    const text = readFileSync(f, "utf8");
    for (const re of forbidden) assert.ok(!re.test(text), `${f} matches ${re}`);
  }
});

test("the shell has no inline script or style", () => {
  const html = readFileSync(join(src, "index.html"), "utf8");
  assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(html), "inline <script>");
  assert.ok(!/<style/i.test(html), "<style>");
  assert.ok(!/\sstyle=/i.test(html), "style attribute");
  assert.ok(!/\son[a-z]+=/i.test(html), "event handler attribute");
  assert.match(html, /<script type="module" src="\/assets\/app\.js"><\/script>/);
  assert.match(html, /<link rel="stylesheet" href="\/assets\/app\.css">/);
});

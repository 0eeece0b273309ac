// Builds the dashboard: src/main.ts -> ../dist/app.js (ES2020 module,
// minified), src/styles.css -> ../dist/app.css, and copies the shell
// (src/index.html) and the icon. The output depends only on the sources and
// the pinned esbuild: no timestamps, no source maps, no absolute paths.
//
//   node build.mjs          the app into ../dist
//   node build.mjs --tests  test/*.test.ts into test-out/ (for node --test)
import * as esbuild from "esbuild";
import { copyFile, mkdir, readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "..", "dist");

async function buildApp() {
  await mkdir(dist, { recursive: true });
  const common = {
    bundle: true,
    minify: true,
    sourcemap: false,
    legalComments: "none",
    charset: "utf8",
    logLevel: "warning",
    absWorkingDir: here,
  };
  await esbuild.build({
    ...common,
    entryPoints: ["src/main.ts"],
    outfile: join(dist, "app.js"),
    format: "esm",
    target: "es2020",
    platform: "browser",
  });
  await esbuild.build({
    ...common,
    entryPoints: ["src/styles.css"],
    outfile: join(dist, "app.css"),
    target: ["chrome90", "firefox90", "safari15"],
  });
  await copyFile(join(here, "src", "index.html"), join(dist, "index.html"));
  await copyFile(join(here, "src", "icon.svg"), join(dist, "icon.svg"));
}

async function buildTests() {
  const out = join(here, "test-out");
  await rm(out, { recursive: true, force: true });
  const tests = (await readdir(join(here, "test"))).filter((f) => f.endsWith(".test.ts"));
  await esbuild.build({
    entryPoints: tests.map((f) => join("test", f)),
    outdir: out,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    packages: "external",
    logLevel: "warning",
    absWorkingDir: here,
  });
}

if (process.argv.includes("--tests")) await buildTests();
else await buildApp();

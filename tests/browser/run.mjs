// The browser suite's runner: every scenario gets a fresh browser context (and starts its own
// servers through `t.startServer()`); scenarios run one after another. Exit code 0 only if all
// passed. Usage: GRANARY_BIN=... [GRANARY_SCREENSHOTS=dir] node run.mjs [name filter]
import { chromium } from "playwright-core";
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startServer, granaryBin } from "./lib/server.mjs";
import { TIMEOUT } from "./lib/expect.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SCENARIO_TIMEOUT = 60_000;
const shots = process.env.GRANARY_SCREENSHOTS || join(here, "..", "..", "target", "screenshots");

if (!existsSync(CHROMIUM)) {
  console.error(`${CHROMIUM} is missing: run \`scripts/deps.sh test\` (it installs Debian's chromium).`);
  process.exit(2);
}
granaryBin();

// Scenarios: every scenarios/*.mjs exports `scenarios`, a list of {name, run(t)}.
const all = [];
for (const f of readdirSync(join(here, "scenarios")).filter((f) => f.endsWith(".mjs")).sort()) {
  const mod = await import(pathToFileURL(join(here, "scenarios", f)));
  for (const s of mod.scenarios) all.push({ ...s, file: f });
}
const filter = process.argv[2];
const chosen = filter ? all.filter((s) => s.name.includes(filter)) : all;
if (chosen.length === 0) {
  console.error(`no scenario matches ${JSON.stringify(filter)}; there are: ${all.map((s) => s.name).join(", ")}`);
  process.exit(2);
}

rmSync(shots, { recursive: true, force: true });
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // playwright-core gives each launch a fresh temporary --user-data-dir.
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

const started = Date.now();
const results = [];
for (const s of chosen) {
  const t0 = Date.now();
  const cleanups = [];
  const contexts = [];
  const servers = [];
  const t = {
    browser,
    /** A new, isolated browser context (own cookies and storage), e.g. for a second person. */
    async newContext() {
      const c = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      c.setDefaultTimeout(TIMEOUT);
      c.setDefaultNavigationTimeout(TIMEOUT);
      contexts.push(c);
      return c;
    },
    /** A new page in a new context. */
    async newPage() {
      return (await t.newContext()).newPage();
    },
    /** A fresh `granary serve` with its own data directory, stopped after the scenario. */
    async startServer(opts) {
      const srv = await startServer(opts);
      servers.push(srv);
      return srv;
    },
    /** Saves a full-page screenshot of `page` as <screenshots>/<name>.png. */
    async screenshot(page, name) {
      await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
    },
    /** Runs `fn` after the scenario, pass or fail. */
    defer(fn) {
      cleanups.push(fn);
    },
  };
  let error = null;
  let timer;
  const limit = s.timeout || SCENARIO_TIMEOUT;
  try {
    await Promise.race([
      s.run(t),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${limit / 1000} s`)), limit); }),
    ]);
  } catch (e) {
    error = e;
  } finally {
    clearTimeout(timer);
  }
  if (error) {
    // Keep what every open page showed when it failed.
    let i = 0;
    for (const c of contexts) {
      for (const p of c.pages()) {
        const file = join(shots, "failures", `${s.name.replace(/[^a-z0-9]+/gi, "-")}-${i++}.png`);
        mkdirSync(dirname(file), { recursive: true });
        await p.screenshot({ path: file, fullPage: true }).catch(() => {});
      }
    }
  }
  for (const fn of cleanups.reverse()) await Promise.resolve().then(fn).catch(() => {});
  for (const c of contexts) await c.close().catch(() => {});
  for (const srv of servers) {
    if (error) error.serverLog = (error.serverLog || "") + srv.log();
    await srv.stop().catch(() => {});
  }
  const ms = Date.now() - t0;
  results.push({ name: s.name, ms, error });
  if (error) {
    console.log(`FAIL  ${s.name} (${ms} ms)\n      ${String(error.stack || error).split("\n").join("\n      ")}`);
    if (error.serverLog) console.log(`      server log:\n        ${error.serverLog.split("\n").join("\n        ")}`);
  } else {
    console.log(`ok    ${s.name} (${ms} ms)`);
  }
}
await browser.close();

const failed = results.filter((r) => r.error);
console.log(`\nbrowser suite: ${results.length - failed.length} passed, ${failed.length} failed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(`screenshots: ${shots}`);
for (const r of failed) console.log(`failed: ${r.name}: ${String(r.error.message).split("\n")[0]}`);
process.exit(failed.length ? 1 : 0);

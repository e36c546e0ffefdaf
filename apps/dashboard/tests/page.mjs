// The dashboard's page in a real browser, framed by a stand-in for Granary's shell, in front
// of a fake of the bridge's local API: the postMessage powerbox flow, /connect, calls, the
// live flip to a revoked error, the HTTP and mail sections, cancel and forget.
//
// Notes calls reach a real apps/notes binary below its path prefix, with `read` only.
//
// Run (after `cargo build` of apps/dashboard and apps/notes, and `npm ci` in tests/browser for
// playwright-core):
//   node apps/dashboard/tests/page.mjs [path/to/dashboard binary]   ($NOTES_BIN: the notes one)
// Uses Debian's /usr/bin/chromium (or $CHROMIUM). Exits non-zero on the first failure.

import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import http from "node:http";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const here = path.dirname(new URL(import.meta.url).pathname);
const require = createRequire(path.join(here, "../../../tests/browser/package.json"));
const { chromium } = require("playwright-core");
const bin = process.argv[2] || process.env.DASHBOARD_BIN || path.join(here, "../target/debug/dashboard");

const listen = (server) => new Promise((r) => server.listen(0, "127.0.0.1", () => r(server.address().port)));
const readBody = (req) => new Promise((r) => { let b = ""; req.on("data", (c) => (b += c)); req.on("end", () => r(b)); });

const listening = (child, name) => new Promise((resolve, reject) => {
  child.stdout.on("data", (d) => { const m = /listening on 127\.0\.0\.1:(\d+)/.exec(String(d)); if (m) resolve(Number(m[1])); });
  child.on("exit", (c) => reject(new Error(`${name} exited ${c}`)));
});

// A real Notes grain's app (apps/notes), if built: the fake platform sends notes calls to it
// below its path prefix with the grant's permission, as the platform would.
const notesBin = process.env.NOTES_BIN || path.join(here, "../../notes/target/debug/notes");
const notesVar = mkdtempSync(path.join(tmpdir(), "notes-page-"));
const notes = spawn(notesBin, ["0"], { env: { NOTES_VAR_DIR: notesVar }, stdio: ["ignore", "pipe", "inherit"] });
const notesPort = await listening(notes, notesBin);
await new Promise((resolve) => {
  const r = http.request({ host: "127.0.0.1", port: notesPort, method: "POST", path: "/api/notes",
    headers: { "x-granary-permissions": "read,write", "content-type": "application/json" } }, (res) => { assert.equal(res.statusCode, 201); res.resume(); res.on("end", resolve); });
  r.end(JSON.stringify({ text: "milk and bread" }));
});

// The fake local API ($GRANARY_API and $HTTP_PROXY).
const seen = [];
let revoked = false;
const platform = http.createServer(async (req, res) => {
  const body = await readBody(req);
  seen.push({ method: req.method, url: req.url, auth: req.headers.authorization, body });
  const send = (status, obj) => { res.writeHead(status, { "content-type": "application/json" }); res.end(obj === undefined ? "" : JSON.stringify(obj)); };
  if (req.method === "POST" && req.url === "/claim") {
    const { claimToken } = JSON.parse(body);
    return claimToken.startsWith("gc_") ? send(200, { token: "gs_" + claimToken.slice(3) + "_secret" }) : send(403, { error: "this powerbox claim is unknown" });
  }
  if (req.method === "DELETE" && req.url.startsWith("/tokens/")) return send(204);
  if (revoked) return send(403, { error: "revoked: may read notes (its grant was revoked or a requirement no longer holds; ask the user to grant it again)" });
  if (req.url.startsWith("/mail/send")) return send(200, { messageId: "<m1@test>" });
  if (req.url.startsWith("http://notes/")) {
    const up = http.request({ host: "127.0.0.1", port: notesPort, method: req.method, path: "/api/" + req.url.slice("http://notes/".length),
      headers: { "x-granary-permissions": "read", "x-granary-session-type": "api" } }, (r) => { res.writeHead(r.statusCode, r.headers); r.pipe(res); });
    return up.end(body);
  }
  return send(200, [{ id: 1, text: "a note from " + req.url, created: "2026-01-01T00:00:00Z" }]);
});
const platformPort = await listen(platform);

// The dashboard itself.
const varDir = mkdtempSync(path.join(tmpdir(), "dashboard-page-"));
const app = spawn(bin, ["0"], {
  env: { DASHBOARD_VAR_DIR: varDir, GRANARY_API: `http://127.0.0.1:${platformPort}`, HTTP_PROXY: `http://127.0.0.1:${platformPort}` },
  stdio: ["ignore", "pipe", "inherit"],
});
const appPort = await listening(app, bin);

// The bridge's part: every request gets the session's X-Granary-Session-Id.
const bridge = http.createServer(async (req, res) => {
  const body = await readBody(req);
  const up = http.request({ host: "127.0.0.1", port: appPort, method: req.method, path: req.url,
    headers: { ...req.headers, "x-granary-session-id": "sess-test" } }, (r) => { res.writeHead(r.statusCode, r.headers); r.pipe(res); });
  up.end(body);
});
const bridgePort = await listen(bridge);
const frameOrigin = `http://127.0.0.1:${bridgePort}`;

// The shell's part: frames the grain (another origin) and answers powerboxRequest.
const shell = http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/html" });
  res.end(`<!doctype html><iframe id="grain" src="${frameOrigin}/" style="width:900px;height:1400px"></iframe><script>
    window.requests = []; window.answer = "pick";
    addEventListener("message", (e) => {
      const f = document.getElementById("grain");
      if (e.source !== f.contentWindow || e.origin !== ${JSON.stringify(frameOrigin)} || !e.data.powerboxRequest) return;
      const r = e.data.powerboxRequest; window.requests.push(r);
      const reply = window.answer === "cancel" ? { rpcId: r.rpcId, canceled: true } : { rpcId: r.rpcId, token: "gc_" + window.answer, descriptor: r.query[0] };
      f.contentWindow.postMessage(reply, ${JSON.stringify(frameOrigin)});
    });</script>`);
});
const shellPort = await listen(shell);

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args: ["--headless", "--no-sandbox", "--disable-gpu"] });
let failed = false;
try {
  const page = await browser.newPage();
  await page.goto(`http://localhost:${shellPort}/`);
  const f = page.frameLocator("#grain");
  const text = (sel) => f.locator(sel).innerText();
  const until = async (what, fn, ms = 5000) => {
    const end = Date.now() + ms;
    for (;;) { if (await fn()) return; if (Date.now() > end) throw new Error("timed out waiting for " + what); await new Promise((r) => setTimeout(r, 50)); }
  };
  await until("the initial state", async () => (await text("#status-notes")) === "Not connected");

  // Cancel: nothing claimed.
  await page.evaluate(() => { window.answer = "cancel"; });
  await f.locator("#connect-notes").click();
  await until("the cancel message", async () => (await text("#message-notes")).startsWith("Canceled"));
  assert.equal(seen.filter((s) => s.url === "/claim").length, 0);

  // Pick: the descriptor the server made, the label, then /claim with the session id.
  await page.evaluate(() => { window.answer = "picked"; });
  await f.locator("#connect-notes").click();
  await until("connected", async () => (await f.locator("#status-notes").getAttribute("data-connected")) === "true");
  const requests = await page.evaluate(() => window.requests);
  const expected = await (await fetch(`${frameOrigin}/descriptor?kind=notes`)).json();
  assert.deepEqual(requests[1].query, [expected.descriptor]);
  assert.equal(requests[1].saveLabel, "Notes for the dashboard");
  const claim = seen.find((s) => s.url === "/claim");
  assert.deepEqual(JSON.parse(claim.body), { sessionId: "sess-test", claimToken: "gc_picked", label: "Notes for the dashboard", requiredPermissions: [] });
  const status = await text("#status-notes");
  assert.match(status, /^Connected: Notes for the dashboard, since .*, token gs_pick…$/);
  assert.ok(!(await page.content()).includes("_secret") && !status.includes("_secret"), "the whole token never reaches the page");

  // Call, then loop while the grant is revoked: the result flips to the platform's text.
  await f.locator("#call-notes").click();
  await until("a call result", async () => (await f.locator("#result-notes").getAttribute("data-ok")) === "true");
  // The Notes app answered GET /api/notes with the note added above.
  const result = await text("#result-notes");
  assert.match(result, /^200 OK\n/);
  assert.deepEqual(JSON.parse(result.split("\n").slice(1).join("\n")).map((n) => n.text), ["milk and bread"]);
  assert.equal(seen.at(-1).auth, "Bearer gs_picked_secret");
  await f.locator("#loop-notes").click();
  assert.equal(await f.locator("#loop-notes").getAttribute("aria-pressed"), "true");
  await new Promise((r) => setTimeout(r, 500));
  const before = seen.length;
  revoked = true;
  await until("the revoked error", async () => (await text("#result-notes")).startsWith("Error (403): revoked: may read notes"));
  assert.equal(await f.locator("#result-notes").getAttribute("data-ok"), "false");
  assert.ok(seen.length - before <= 10, "about one call per 200 ms");
  await f.locator("#loop-notes").click();
  await until("the loop to stop", async () => (await f.locator("#loop-notes").getAttribute("aria-pressed")) === "false");
  revoked = false;

  // HTTP origin: a typed origin, a path.
  await f.locator("#connect-http").click();
  await until("the origin hint", async () => (await text("#message-http")).includes("Type the origin"));
  await f.locator("#http-origin").fill("http://api.test:9");
  await page.evaluate(() => { window.answer = "web"; });
  await f.locator("#connect-http").click();
  await until("http connected", async () => (await text("#status-http")).includes("HTTP API http://api.test:9 (http://api.test:9)"));
  await f.locator("#http-path").fill("/v1/items");
  await f.locator("#call-http").click();
  await until("the http result", async () => (await text("#result-http")).startsWith("200 OK"));
  assert.equal(seen.at(-1).url, "http://api.test:9/v1/items");

  // Mail: send without a connection says so; then connect and send.
  await f.locator("#mail-to").fill("bob@example.org");
  await f.locator("#send-mail").click();
  await until("the not-connected error", async () => (await text("#result-mail")).startsWith("Error: not connected"));
  await page.evaluate(() => { window.answer = "mail"; });
  await f.locator("#connect-mail").click();
  await until("mail connected", async () => (await text("#status-mail")).includes("Mail from the dashboard"));
  await f.locator("#send-mail").click();
  await until("the mail result", async () => (await text("#result-mail")).includes("m1@test"));
  const mail = seen.at(-1);
  assert.equal(mail.url, "/mail/send?to=bob%40example.org");
  assert.match(mail.body, /^To: bob@example.org\r\nSubject: A test from the dashboard\r\n/);

  // Forget drops the grant.
  await f.locator("#forget-notes").click();
  await until("forgotten", async () => (await text("#status-notes")) === "Not connected");
  assert.ok(seen.some((s) => s.method === "DELETE" && s.url === "/tokens/gs_picked_secret"));
  console.log("dashboard page: ok");
} catch (e) {
  failed = true;
  console.error("dashboard page: FAILED:", e);
} finally {
  await browser.close();
  app.kill();
  notes.kill();
  rmSync(notesVar, { recursive: true, force: true });
  for (const s of [platform, bridge, shell]) s.close();
  rmSync(varDir, { recursive: true, force: true });
  process.exit(failed ? 1 : 0);
}

// The powerbox end to end (SPEC.md "Powerbox"): the real Notes and Dashboard sample apps in real
// sandboxes, a Dashboard grain asking through postMessage, the shell's dialog, the pick, the
// bridge's /claim and proxy, the HTTP driver against a test server in this process (reached as
// `api.test` through `granary serve --resolve`), the SSRF guard, grain-to-grain calls, cancel,
// the empty picker, and live revocation — by "What can this reach" and by a requirement that
// stops holding (a revoked sharing link) — measured in the calling tab.
import http from "node:http";
import net from "node:net";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, expectHidden, expectPath, expectStatus, expectText } from "../lib/expect.mjs";
import { grainFrame, installPackage, newGrain, setupAdmin, submit } from "../lib/flows.mjs";
import { dashboardPackage, freePort, notesPackage } from "../lib/server.mjs";

const TIMEOUT = 150_000;
/** The bound: a live call fails within 1 s of the revocation. */
const REVOKE_WITHIN_MS = 1_000;
const PASSWORD = "a long enough password";
/** Polls by time, not animation frames: a tab behind the second one gets few frames. */
const POLL = { polling: 50 };

/** An HTTP server on 127.0.0.1 that records every request and answers JSON naming the path. */
async function testApi(t) {
  const seen = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method, url: req.url, host: req.headers.host, headers: req.headers });
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ answer: "hello from the test API", path: req.url }));
  });
  const port = await new Promise((r) => server.listen(0, "127.0.0.1", () => r(server.address().port)));
  t.defer(() => new Promise((r) => server.close(r)));
  return { port, seen };
}

/** A server (with `args`), the admin signed in on a page, Notes and Dashboard installed. */
async function powerboxServer(t, args = []) {
  const server = await t.startServer({ args });
  const admin = await t.newPage();
  await setupAdmin(admin, server);
  const notesApp = await installPackage(admin, server, notesPackage(), "Notes");
  const dashboardApp = await installPackage(admin, server, dashboardPackage(), "Dashboard");
  return { server, admin, notesApp, dashboardApp };
}

/** Creates a grain of the app `appId` with the action `button`; returns {id, frame} once its page shows `h1`. */
async function appGrain(page, server, appId, button, title, h1) {
  expectStatus(await page.goto(server.url(`/apps/${appId}`)), 200, "the app's page");
  const id = await newGrain(page, button, title);
  const frame = await grainFrame(page, { app: h1 });
  return { id, frame };
}
const dashboardGrain = (page, server, appId, title = "My dashboard") => appGrain(page, server, appId, "New dashboard", title, "Dashboard");
const notesGrain = (page, server, appId, title = "Shopping") => appGrain(page, server, appId, "New notebook", title, "Notes");

/** Admin → Settings: fills `fields` (name → value) and saves. */
async function saveSettings(page, server, fields) {
  expectStatus(await page.goto(server.url("/admin/settings")), 200, "the settings page");
  const form = page.locator("form#settings");
  for (const [name, value] of Object.entries(fields)) await form.locator(`input[name="${name}"]`).fill(value);
  expectStatus(await submit(page, form.getByRole("button", { name: "Save settings" }), "/admin/settings"), 200, "saving the settings");
  await expectText(page.locator('[role="status"]'), "Saved.");
}

/** The shell's powerbox dialog, once open and past "Looking for…": it shows what was asked. */
async function openDialog(page, frame, button) {
  await frame.locator(button).click();
  const dialog = page.locator("dialog#powerbox[open]");
  await dialog.locator("#powerbox-asked").waitFor();
  return dialog;
}

/** Picks the dialog's option showing `text`; waits for the dialog to close. */
async function pick(page, dialog, text) {
  const option = dialog.locator("#powerbox-options button.pb-option", { hasText: text });
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === "POST" && /\/powerbox\/pick$/.test(new URL(r.url()).pathname)),
    option.click(),
  ]);
  expectStatus(resp, 200, "picking an option");
  await expectHidden(page.locator("dialog#powerbox"), { what: "the powerbox dialog" });
}

/** Waits until the dashboard shows `kind` connected; returns the status text. */
async function expectConnected(frame, kind, label) {
  const status = frame.locator(`#status-${kind}[data-connected="true"]`);
  await expectText(status, label, { what: `the dashboard's ${kind} status` });
  return status.innerText();
}

/** Clicks `#call-<kind>` and waits for a result newer than the last one; returns {ok, status, text}. */
async function call(frame, kind) {
  const result = frame.locator(`#result-${kind}`);
  const before = await result.getAttribute("data-time");
  await frame.locator(`#call-${kind}`).click();
  await frame.waitForFunction(([id, t]) => { const e = document.getElementById(id); return e.dataset.time && e.dataset.time !== t; }, [`result-${kind}`, before], POLL);
  return { ok: (await result.getAttribute("data-ok")) === "true", status: await result.getAttribute("data-status"), text: await result.innerText() };
}

/**
 * Live revocation: starts `#loop-<kind>` (a call every 200 ms) on the dashboard in `frame`, waits
 * for successful calls, then `revoke()` (which returns {sent, answered}: when its request left
 * and when its response came); measures how long after that the loop's result shows "revoked" (the
 * frame's MutationObserver stamps the first such text). Returns the latency from the response.
 */
async function measureRevocation(frame, kind, revoke, what) {
  const result = frame.locator(`#result-${kind}`);
  await frame.locator(`#loop-${kind}`).click();
  assert.equal(await frame.locator(`#loop-${kind}`).getAttribute("aria-pressed"), "true", "the loop is running");
  // Two successive successful answers: the loop is live before the revocation.
  for (let i = 0; i < 2; i++) {
    const t0 = await result.getAttribute("data-time");
    await frame.waitForFunction(([id, t]) => { const e = document.getElementById(id); return e.dataset.time !== t && e.dataset.ok === "true"; }, [`result-${kind}`, t0], POLL);
  }
  await frame.evaluate((id) => {
    window.__revokedAt = null;
    const e = document.getElementById(id);
    new MutationObserver(() => { if (window.__revokedAt === null && e.dataset.ok === "false" && e.textContent.includes("revoked")) window.__revokedAt = Date.now(); })
      .observe(e, { childList: true, characterData: true, subtree: true, attributes: true });
  }, `result-${kind}`);
  const { sent, answered } = await revoke();
  await frame.waitForFunction(() => window.__revokedAt !== null, null, { ...POLL, timeout: 10_000 }).catch(async () => {
    throw new Error(`${what}: #result-${kind} never showed "revoked"; it shows ${JSON.stringify(await result.innerText())}`);
  });
  const at = await frame.evaluate(() => window.__revokedAt);
  // Back to the calling tab (a tab in the background gets few animation frames, which
  // playwright's clicks wait for).
  await frame.page().bringToFront();
  const fromResponse = Math.max(0, at - answered);
  console.log(`      ${what}: the calling tab showed "revoked" ${at - sent} ms after the revoke was sent, ${fromResponse} ms after its response`);
  assert.ok(fromResponse <= REVOKE_WITHIN_MS, `${what}: "revoked" showed ${fromResponse} ms after the revocation, more than ${REVOKE_WITHIN_MS} ms`);
  const text = await result.innerText();
  assert.match(text, /^Error \(403\): .*revoked/, `${what}: the error the dashboard shows`);
  assert.match(text, /ask the user to grant it again/, `${what}: the error says what to do`);
  assert.ok(!text.includes("remote exception"), `${what}: the platform's message reaches the app without capnp's prefixes: ${text}`);
  // The loop keeps failing: the grant stays revoked.
  const t1 = await result.getAttribute("data-time");
  await frame.waitForFunction(([id, t]) => { const e = document.getElementById(id); return e.dataset.time !== t; }, [`result-${kind}`, t1], POLL);
  assert.equal(await result.getAttribute("data-ok"), "false", `${what}: a call after the revocation`);
  const later = await result.innerText();
  assert.match(later, /^Error \(403\): revoked: /, `${what}: a call after the revocation (the grant is restored afresh and refused)`);
  await frame.locator(`#loop-${kind}`).click();
  await frame.locator(`#loop-${kind}[aria-pressed="false"]`).waitFor();
  return fromResponse;
}

/** In a second tab of `context`, revokes the only live grant on the grain's reach page (confirming); returns {page, sent, answered, grantId}. */
function revokeOnReachPage(context, server, grainId, holder = {}) {
  return async () => {
    const reach = await context.newPage();
    expectStatus(await reach.goto(server.url(`/grains/${grainId}/reach`)), 200, "the grain's reach page");
    const row = reach.locator("#reach-held tr[data-grant]");
    assert.equal(await row.count(), 1, "the reach page lists one grant");
    holder.grantId = await row.getAttribute("data-grant");
    let confirmed = null;
    reach.once("dialog", (d) => { confirmed = d.message(); d.accept(); });
    const sent = Date.now();
    const resp = await submit(reach, row.getByRole("button", { name: "Revoke" }), `/grants/${holder.grantId}/revoke`);
    const answered = Date.now();
    expectStatus(resp, 303, "revoking the grant");
    assert.match(confirmed || "", /Revoke this grant\?/, "the revoke button asks for confirmation");
    holder.page = reach;
    return { sent, answered };
  };
}

/** The row of a revoked grant on the reach page (after the redirect back to it) says so. */
async function expectRevokedRow(holder, grainId) {
  await expectPath(holder.page, `/grains/${grainId}/reach`);
  const row = holder.page.locator(`#reach-held tr[data-grant="${holder.grantId}"]`);
  await expectText(row, "revoked", { what: "the revoked grant's row" });
  assert.equal(await row.getByRole("button", { name: "Revoke" }).count(), 0, "a revoked grant has no Revoke button");
}

/** Connects `dashboard` (a frame in `page`) to the HTTP origin `origin` through the dialog. */
async function connectHttp(page, frame, origin, shot) {
  await frame.locator("#http-origin").fill(origin);
  const dialog = await openDialog(page, frame, "#connect-http");
  await expectText(dialog.locator("#powerbox-asked"), `access to the web API at ${origin}`, { what: "what the dialog says is asked" });
  await expectText(dialog.locator("#powerbox-options button.pb-option"), `may send HTTP requests to ${origin}`, { what: "the HTTP option" });
  if (shot) await shot(page);
  await pick(page, dialog, "Web API");
  return expectConnected(frame, "http", origin);
}

/** Adds a note on a Notes grain's page (in `frame`) and waits for it to be listed. */
async function addNote(frame, text) {
  await frame.locator("#note-text").fill(text);
  await frame.locator("#add-note").click();
  await expectText(frame.locator("#notes li"), text, { what: "the new note" });
}

/**
 * Picks the Notes grain titled `title` in an open dialog: its chooser page opens inside the
 * dialog (a session of the Notes grain); returns the chooser frame once it lists its choices.
 */
async function openNotesChooser(page, dialog, title) {
  await expectText(dialog.locator("#powerbox-options button.pb-option"), title, { what: "the Notes grain option" });
  const option = dialog.locator("#powerbox-options button.pb-option", { hasText: title });
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === "POST" && /\/powerbox\/chooser$/.test(new URL(r.url()).pathname)),
    option.click(),
  ]);
  expectStatus(resp, 200, "opening the Notes grain's chooser page");
  const frameEl = dialog.locator("iframe#powerbox-chooser");
  await frameEl.waitFor();
  const chooser = await (await frameEl.elementHandle()).contentFrame();
  await chooser.locator('#choices button[data-note="all"]').waitFor();
  return chooser;
}

/**
 * Connects the dashboard to the Notes grain titled `title` through the dialog and the grain's
 * chooser page: all notes, or the one whose text is `note`. `shot(page)` runs while the chooser shows.
 */
async function connectNotes(page, frame, title, { note = null, shot = null } = {}) {
  const dialog = await openDialog(page, frame, "#connect-notes");
  await expectText(dialog.locator("#powerbox-asked"), "“notes” API", { what: "what the dialog says is asked" });
  const chooser = await openNotesChooser(page, dialog, title);
  const choice = note === null ? chooser.locator('#choices button[data-note="all"]') : chooser.locator("#choices button", { hasText: note });
  if (shot) await shot(page);
  await choice.click();
  await expectHidden(page.locator("dialog#powerbox"), { what: "the powerbox dialog, after the chooser page chose" });
  return expectConnected(frame, "notes", "Notes for the dashboard");
}

/** Calls notes through the dashboard; asserts the answer lists `texts` (the Notes grain's API). */
async function expectNotesCall(frame, texts) {
  const r = await call(frame, "notes");
  assert.ok(r.ok, `the notes call failed: ${r.text}`);
  assert.equal(r.status, "200", "the notes call's status");
  assert.match(r.text, /^200 OK\n/);
  assert.deepEqual(JSON.parse(r.text.split("\n").slice(1).join("\n")).map((n) => n.text), texts, "the notes the call returned");
}

/** The admin invites `person` (on /admin); they accept in a new context. Returns their page. */
async function invite(t, server, admin, person) {
  expectStatus(await admin.goto(server.url("/admin")), 200, "/admin");
  expectStatus(await submit(admin, admin.getByRole("button", { name: "Create an invitation link" }), "/admin/invite"), 200, "creating an invitation");
  const url = await admin.locator("#invite-url").inputValue();
  const page = await t.newPage();
  expectStatus(await page.goto(url), 200, "the invitation page");
  const form = page.locator('form[action^="/invite/"]');
  await form.locator('input[name="username"]').fill(person.username);
  await form.locator('input[name="display_name"]').fill(person.displayName);
  await form.locator('input[name="password"]').fill(person.password);
  await form.locator('input[name="password2"]').fill(person.password);
  expectStatus(await submit(page, form.getByRole("button", { name: "Create account and sign in" }), new URL(url).pathname), 303, "accepting the invitation");
  await expectPath(page, "/");
  await expectText(page.locator("header .who"), person.displayName);
  return page;
}

/** Waits (polling, up to `ms`) until `fn()` is truthy; fails saying `what`. */
async function until(what, fn, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Debian's aiosmtpd on a free loopback port, writing to a Maildir; stopped after the scenario. */
async function smtpRelay(t) {
  const dir = mkdtempSync(join(tmpdir(), "granary-relay-"));
  const port = await freePort();
  const child = spawn("/usr/bin/python3", ["-m", "aiosmtpd", "-n", "-l", `127.0.0.1:${port}`, "-c", "aiosmtpd.handlers.Mailbox", join(dir, "maildir")], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  t.defer(() => { child.kill(); rmSync(dir, { recursive: true, force: true }); });
  const connects = () => new Promise((r) => { const c = net.connect(port, "127.0.0.1", () => { c.destroy(); r(true); }); c.on("error", () => r(false)); });
  await until(`aiosmtpd on port ${port} (python3-aiosmtpd is needed: scripts/deps.sh test) ${stderr}`, connects, 20_000);
  return { port, messages: () => maildirMessages(join(dir, "maildir")) };
}

/** The messages in a Maildir's `new`, as text. */
function maildirMessages(dir) {
  const nd = join(dir, "new");
  return existsSync(nd) ? readdirSync(nd).map((f) => readFileSync(join(nd, f), "utf8")) : [];
}

/** A minimal SMTP client: one message from `from` to `to`; returns the server's replies. */
function smtpSend(port, from, to, data) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    const replies = [];
    const steps = [`EHLO tests.example`, `MAIL FROM:<${from}>`, `RCPT TO:<${to}>`, "DATA", `${data.replace(/\r?\n/g, "\r\n")}\r\n.`, "QUIT"];
    let buf = "";
    sock.setEncoding("utf8");
    sock.on("data", (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf("\r\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (/^\d{3}-/.test(line)) continue; // a multi-line reply goes on
        replies.push(line);
        if (!/^[23]/.test(line)) { sock.destroy(); return reject(new Error(`SMTP refused: ${replies.join(" | ")}`)); }
        const next = steps.shift();
        if (next === undefined) { sock.end(); return resolve(replies); }
        sock.write(next + "\r\n");
      }
    });
    sock.on("error", reject);
  });
}

export const scenarios = [
  {
    name: "powerbox: the HTTP driver granted through the dialog reaches an allowlisted origin; a loopback origin is refused",
    timeout: TIMEOUT,
    async run(t) {
      const api = await testApi(t);
      const { server, admin, dashboardApp } = await powerboxServer(t, ["--resolve", "api.test=127.0.0.1"]);
      await saveSettings(admin, server, { http_allowlist: "api.test" });
      const { id: grainId, frame } = await dashboardGrain(admin, server, dashboardApp);
      const origin = `http://api.test:${api.port}`;
      await connectHttp(admin, frame, origin, (p) => t.screenshot(p, "40-powerbox-dialog"));

      await frame.locator("#http-path").fill("/v1/hello?x=1");
      const r = await call(frame, "http");
      assert.ok(r.ok, `the HTTP call failed: ${r.text}`);
      assert.deepEqual(JSON.parse(r.text.split("\n").slice(1).join("\n")), { answer: "hello from the test API", path: "/v1/hello?x=1" }, "the test API's answer, shown in the grain");
      assert.equal(api.seen.length, 1, `the test API got ${api.seen.length} requests`);
      assert.equal(api.seen[0].method, "GET");
      assert.equal(api.seen[0].url, "/v1/hello?x=1");
      assert.equal(api.seen[0].host, `api.test:${api.port}`, "the Host the driver sent");
      assert.equal(api.seen[0].headers.authorization, undefined, "the grant's token never leaves the platform");
      assert.ok(!Object.keys(api.seen[0].headers).some((h) => h.startsWith("x-granary-")), "no X-Granary-* header reaches the origin");

      // The grant is listed on the grain's reach page.
      const reach = await admin.context().newPage();
      expectStatus(await reach.goto(server.url(`/grains/${grainId}/reach`)), 200, "the reach page");
      await expectText(reach.locator("#reach-held tr[data-grant]"), `may send HTTP requests to ${origin}`, { what: "the grant's row" });
      await t.screenshot(reach, "41-powerbox-reach");
      await reach.close();

      // A second grain granted the same test server by its loopback address: the SSRF guard
      // refuses it (127.0.0.1 is not allowlisted), and the test server sees nothing.
      const second = await dashboardGrain(admin, server, dashboardApp, "Loopback dashboard");
      const loopback = `http://127.0.0.1:${api.port}`;
      await connectHttp(admin, second.frame, loopback);
      const refused = await call(second.frame, "http");
      assert.equal(refused.ok, false, `a loopback origin must be refused: ${refused.text}`);
      assert.equal(refused.status, "403", `the refusal's status: ${refused.text}`);
      assert.match(refused.text, /loopback/, "the refusal says why");
      assert.equal(api.seen.length, 1, "the refused request never reached the test server");
    },
  },
  {
    name: "powerbox: a Dashboard grain reads a Notes grain picked by its title",
    timeout: TIMEOUT,
    async run(t) {
      const { server, admin, notesApp, dashboardApp } = await powerboxServer(t);
      const notes = await notesGrain(admin, server, notesApp, "Groceries");
      await addNote(notes.frame, "milk and bread");
      const dash = await dashboardGrain(admin, server, dashboardApp);
      await connectNotes(admin, dash.frame, "Groceries");
      await expectNotesCall(dash.frame, ["milk and bread"]);
      // The Notes grain's reach page lists the dashboard as a grain that can reach it.
      expectStatus(await admin.goto(server.url(`/grains/${notes.id}/reach`)), 200, "the notes grain's reach page");
      await expectText(admin.locator("#reach-into tr[data-grant]"), "may use Notes in “Groceries”", { what: "the grant into the notes grain" });
      await expectText(admin.locator("#reach-into tr[data-grant]"), "My dashboard", { what: "the holder of the grant" });
    },
  },
  {
    name: "powerbox: the Notes grain's chooser page opens inside the dialog and grants one note",
    timeout: TIMEOUT,
    async run(t) {
      const { server, admin, notesApp, dashboardApp } = await powerboxServer(t);
      const notes = await notesGrain(admin, server, notesApp, "Groceries");
      await addNote(notes.frame, "milk and bread");
      await addNote(notes.frame, "three lemons");
      const dash = await dashboardGrain(admin, server, dashboardApp);

      // Cancel while the chooser shows: nothing is granted.
      let dialog = await openDialog(admin, dash.frame, "#connect-notes");
      const first = await openNotesChooser(admin, dialog, "Groceries");
      await expectText(first.locator("#choices"), "three lemons", { what: "the notes the chooser lists" });
      await dialog.locator("#powerbox-cancel").click();
      await expectHidden(admin.locator("dialog#powerbox"), { what: "the dialog after cancel" });
      await expectText(dash.frame.locator("#message-notes"), "Canceled: nothing was connected.");

      // Choose one note: the dashboard's call reaches that note and nothing else.
      await connectNotes(admin, dash.frame, "Groceries", { note: "three lemons", shot: (p) => t.screenshot(p, "43-powerbox-chooser") });
      const r = await call(dash.frame, "notes");
      assert.ok(r.ok, `the notes call failed: ${r.text}`);
      const got = JSON.parse(r.text.split("\n").slice(1).join("\n"));
      assert.equal(got.text, "three lemons", "the dashboard shows the chosen note");
      assert.ok(!r.text.includes("milk and bread"), "the other note is out of reach");
      expectStatus(await admin.goto(server.url(`/grains/${notes.id}/reach`)), 200, "the notes grain's reach page");
      await expectText(admin.locator("#reach-into tr[data-grant]"), "may use Notes in “Groceries” below /api/notes/2/ (“three lemons”)", { what: "the narrowed grant" });
    },
  },
  {
    name: "powerbox: renderTemplate shows an API token in the shell's dialog; a program uses it until it is revoked",
    timeout: TIMEOUT,
    async run(t) {
      const { server, admin, dashboardApp } = await powerboxServer(t);
      const dash = await dashboardGrain(admin, server, dashboardApp);
      await dash.frame.locator("#api-token").click();
      const dialog = admin.locator("dialog#powerbox[open]");
      const text = dialog.locator("#powerbox-template");
      await text.waitFor();
      const shown = await text.inputValue();
      const m = /^curl -H 'Authorization: Bearer (gk_[0-9a-f]{64})' (\S+)\/state$/.exec(shown);
      assert.ok(m, `the dialog shows the filled-in template: ${shown}`);
      assert.equal(m[2], server.url("/grain-api"), "$API_HOST is the server's grain API");
      await t.screenshot(admin, "42-powerbox-api-token");
      await expectText(dash.frame.locator('#api-token-status[data-connected="true"]'), "Granary showed you the token");
      assert.ok(!(await dash.frame.locator("body").innerText()).includes(m[1]), "the grain's page never sees the token");
      await dialog.locator("#powerbox-close").click();
      await expectHidden(admin.locator("dialog#powerbox"), { what: "the dialog" });
      // A program (node's http: no cookies) reads the dashboard's state with the token. Node
      // does not resolve *.localhost, so it connects to loopback and names the host itself.
      const url = new URL(`${m[2]}/state`);
      const get = () => new Promise((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port: url.port, path: url.pathname, headers: { host: url.host, authorization: `Bearer ${m[1]}` } }, (res) => {
          let body = "";
          res.on("data", (c) => { body += c; });
          res.on("end", () => resolve({ status: res.statusCode, body }));
        });
        req.on("error", reject);
        req.end();
      });
      const r = await get();
      assert.equal(r.status, 200, `the token works: ${r.body}`);
      assert.ok("connections" in JSON.parse(r.body), "the dashboard's /state answered");
      // Revoked on the reach page, it stops at once.
      expectStatus(await admin.goto(server.url(`/grains/${dash.id}/reach`)), 200, "the reach page");
      const row = admin.locator("#reach-tokens tr[data-token]");
      await expectText(row, "Dashboard state for a script", { what: "the token's row" });
      admin.once("dialog", (d) => d.accept());
      const id = await row.getAttribute("data-token");
      expectStatus(await submit(admin, row.getByRole("button", { name: "Revoke" }), `/grains/${dash.id}/api-tokens/${id}/revoke`), 303, "revoking the token");
      assert.equal((await get()).status, 401, "a revoked token no longer works");
    },
  },
  {
    name: "powerbox: an API key the dashboard's server offers is shown by the shell and made only when accepted",
    timeout: TIMEOUT,
    async run(t) {
      const { server, admin, dashboardApp } = await powerboxServer(t);
      const dash = await dashboardGrain(admin, server, dashboardApp);
      const dialog = admin.locator("dialog#powerbox[open]");
      // No thanks: nothing is made.
      await dash.frame.locator("#offer-key").click();
      await expectText(dash.frame.locator("#api-token-status"), "Granary will show you the offer.");
      await expectText(dialog.locator("#powerbox-offer-title"), "Dashboard state for a script", { what: "the offer in the shell's dialog" });
      await dialog.locator("#powerbox-offer-decline").click();
      await expectHidden(admin.locator("dialog#powerbox"), { what: "the dialog after No thanks" });
      // Accepted: the shell shows the key; the grain's page never sees it.
      await dash.frame.locator("#offer-key").click();
      await expectText(dialog.locator("#powerbox-offer-title"), "Dashboard state for a script", { what: "the second offer" });
      await dialog.locator("#powerbox-offer-accept").click();
      const field = dialog.locator("#powerbox-offer-token");
      await field.waitFor();
      const token = await field.inputValue();
      assert.match(token, /^gk_[0-9a-f]{64}$/, "the key");
      assert.equal(await dialog.locator("#powerbox-offer-host").inputValue(), server.url("/grain-api"), "the address");
      await t.screenshot(admin, "44-powerbox-offer");
      assert.ok(!(await dash.frame.locator("body").innerText()).includes(token), "the grain's page never sees the key");
      const url = new URL(server.url("/grain-api/state"));
      const r = await new Promise((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port: url.port, path: url.pathname, headers: { host: url.host, authorization: `Bearer ${token}` } }, (res) => {
          let body = "";
          res.on("data", (c) => { body += c; });
          res.on("end", () => resolve({ status: res.statusCode, body }));
        });
        req.on("error", reject);
        req.end();
      });
      assert.equal(r.status, 200, `the key works: ${r.body}`);
      assert.ok("connections" in JSON.parse(r.body), "the dashboard's /state answered");
      expectStatus(await admin.goto(server.url(`/grains/${dash.id}/reach`)), 200, "the reach page");
      assert.equal(await admin.locator("#reach-tokens tr[data-token]").count(), 1, "one key: the declined offer made none");
    },
  },
  {
    name: "powerbox: canceling the dialog grants nothing; with no Notes grain the dialog says nothing provides it",
    timeout: TIMEOUT,
    async run(t) {
      const { server, admin, dashboardApp } = await powerboxServer(t);
      const { id, frame } = await dashboardGrain(admin, server, dashboardApp);
      // Empty: no Notes grain exists.
      let dialog = await openDialog(admin, frame, "#connect-notes");
      await expectText(dialog.locator("#powerbox-empty"), "Nothing on this server can provide that.", { what: "the empty picker" });
      await expectText(dialog.locator("#powerbox-asked"), "“notes” API");
      assert.equal(await dialog.locator("#powerbox-options").count(), 0, "no options are listed");
      await dialog.locator("#powerbox-cancel").click();
      await expectHidden(admin.locator("dialog#powerbox"), { what: "the dialog" });
      await expectText(frame.locator("#message-notes"), "Canceled: nothing was connected.");

      // Cancel with an option on offer (the HTTP driver).
      await frame.locator("#http-origin").fill("http://api.test:9");
      dialog = await openDialog(admin, frame, "#connect-http");
      await dialog.locator("#powerbox-options button.pb-option").first().waitFor();
      await dialog.locator("#powerbox-cancel").click();
      await expectHidden(admin.locator("dialog#powerbox"), { what: "the dialog" });
      await expectText(frame.locator("#message-http"), "Canceled: nothing was connected.");
      assert.equal(await frame.locator("#status-http").getAttribute("data-connected"), "false", "nothing is connected");
      assert.equal(await frame.locator("#status-notes").getAttribute("data-connected"), "false", "nothing is connected");
      expectStatus(await admin.goto(server.url(`/grains/${id}/reach`)), 200, "the reach page");
      await expectText(admin.locator("#reach-held"), "this grain can reach nothing outside itself");
      assert.equal(await admin.locator("tr[data-grant]").count(), 0, "no grant rows");
    },
  },
  {
    name: "powerbox: revoking an HTTP grant and a Notes grant on the reach page fails the live calls within 1 s",
    timeout: TIMEOUT,
    async run(t) {
      const api = await testApi(t);
      const { server, admin, notesApp, dashboardApp } = await powerboxServer(t, ["--resolve", "api.test=127.0.0.1"]);
      await saveSettings(admin, server, { http_allowlist: "api.test" });
      const notes = await notesGrain(admin, server, notesApp, "Groceries");
      await addNote(notes.frame, "eggs");

      // HTTP driver.
      const httpDash = await dashboardGrain(admin, server, dashboardApp, "HTTP dashboard");
      await connectHttp(admin, httpDash.frame, `http://api.test:${api.port}`);
      const httpRow = {};
      await measureRevocation(httpDash.frame, "http", revokeOnReachPage(admin.context(), server, httpDash.id, httpRow), "HTTP grant revoked on the reach page");
      await expectRevokedRow(httpRow, httpDash.id);
      const served = api.seen.length;
      assert.ok(served >= 2, "the loop reached the test API before the revocation");
      const after = await call(httpDash.frame, "http");
      assert.equal(after.ok, false, "a call after the revocation fails");
      assert.equal(api.seen.length, served, "nothing reaches the test API after the revocation");

      // Grain to grain.
      const notesDash = await dashboardGrain(admin, server, dashboardApp, "Notes dashboard");
      await connectNotes(admin, notesDash.frame, "Groceries");
      await expectNotesCall(notesDash.frame, ["eggs"]);
      const notesRow = {};
      await measureRevocation(notesDash.frame, "notes", revokeOnReachPage(admin.context(), server, notesDash.id, notesRow), "Notes grant revoked on the reach page");
      await expectRevokedRow(notesRow, notesDash.id);
    },
  },
  {
    name: "powerbox: revoking the sharing link of a Notes grain fails another person's live grant within 1 s",
    timeout: TIMEOUT,
    async run(t) {
      const { server, admin, notesApp, dashboardApp } = await powerboxServer(t);
      const notes = await notesGrain(admin, server, notesApp, "Shared groceries");
      await addNote(notes.frame, "apples");
      // A viewer link (read only) for Bob.
      await admin.locator(".grainbar").getByRole("link", { name: "Share" }).click();
      await expectPath(admin, `/grains/${notes.id}/access`);
      const form = admin.locator("form.share");
      await form.locator('select[name="role"]').selectOption("0");
      await form.locator('input[name="label"]').fill("For Bob");
      const made = await submit(admin, form.getByRole("button", { name: "Create link" }), `/grains/${notes.id}/share`);
      assert.ok([200, 303].includes(made.status()), `creating a link: HTTP ${made.status()}`);
      const link = await admin.locator("#new-link-url").inputValue();

      const bob = await invite(t, server, admin, { username: "bob", displayName: "Bob Reader", password: PASSWORD });
      expectStatus(await bob.goto(link), 200, "the sharing link");
      expectStatus(await submit(bob, bob.locator('button[name="mode"][value="reveal"]'), new URL(link).pathname), 303, "opening the link as oneself");
      await expectPath(bob, `/grains/${notes.id}`);
      const bobNotes = await grainFrame(bob, { app: "Notes" });
      await expectText(bobNotes.locator("#notes li"), "apples", { what: "the shared notes, as Bob sees them" });
      assert.equal(await bobNotes.locator("#note-text").count(), 0, "a viewer has no form to add notes");

      const dash = await dashboardGrain(bob, server, dashboardApp, "Bob's dashboard");
      await connectNotes(bob, dash.frame, "Shared groceries");
      await expectNotesCall(dash.frame, ["apples"]);

      await measureRevocation(dash.frame, "notes", async () => {
        expectStatus(await admin.goto(server.url(`/grains/${notes.id}/access`)), 200, "the access page");
        const row = admin.locator("#links tr[data-link]", { hasText: "For Bob" });
        const linkId = await row.getAttribute("data-link");
        const sent = Date.now();
        const resp = await submit(admin, row.getByRole("button", { name: "Revoke" }), `/grains/${notes.id}/links/${linkId}/revoke`);
        const answered = Date.now();
        assert.ok([200, 303].includes(resp.status()), `revoking the link: HTTP ${resp.status()}`);
        return { sent, answered };
      }, "sharing link revoked (Bob lost read)");
    },
  },
  {
    name: "powerbox: a mail grant sends through the relay as the grain's address; mail to the grain reaches its Maildir",
    timeout: TIMEOUT,
    async run(t) {
      const relay = await smtpRelay(t);
      const smtpPort = await freePort();
      const { server, admin, dashboardApp } = await powerboxServer(t, ["--smtp-listen", `127.0.0.1:${smtpPort}`]);
      await saveSettings(admin, server, { smtp_relay: `127.0.0.1:${relay.port}` });
      const { id, frame } = await dashboardGrain(admin, server, dashboardApp);
      const address = `${id}@granary.localhost`;
      const dialog = await openDialog(admin, frame, "#connect-mail");
      await expectText(dialog.locator("#powerbox-asked"), "permission to send mail");
      await expectText(dialog.locator("#powerbox-options button.pb-option"), `may send mail as ${address}`, { what: "the mail option" });
      await pick(admin, dialog, "Send mail");
      await expectConnected(frame, "mail", "Mail from the dashboard");

      await frame.locator("#mail-to").fill("someone@example.org");
      await frame.locator("#mail-subject").fill("Hello through the powerbox");
      await frame.locator("#mail-body").fill("Sent by a grain with no network.");
      const before = await frame.locator("#result-mail").getAttribute("data-time");
      await frame.locator("#send-mail").click();
      await frame.waitForFunction((t) => { const e = document.getElementById("result-mail"); return e.dataset.time && e.dataset.time !== t; }, before, POLL);
      const shown = await frame.locator("#result-mail").innerText();
      assert.equal(await frame.locator("#result-mail").getAttribute("data-ok"), "true", `sending failed: ${shown}`);
      // The relay took it before the platform answered, so it is in the Maildir now.
      const got = relay.messages();
      assert.equal(got.length, 1, `the relay has ${got.length} messages`);
      const head = got[0].split(/\r?\n\r?\n/)[0];
      assert.match(head, new RegExp(`^From: ${address}$`, "m"), `the sender the platform set: ${head}`);
      assert.equal((head.match(/^From:/gim) || []).length, 1, "one From field");
      assert.match(head, /^To: someone@example.org$/m);
      assert.match(head, /^Subject: Hello through the powerbox$/m);
      assert.match(got[0], new RegExp(`^X-MailFrom: ${address}$`, "m"), "the envelope sender (aiosmtpd's X-MailFrom)");
      const messageId = /^Message-ID: (<[^>]+>)$/im.exec(head)?.[1];
      assert.ok(messageId && shown.includes(messageId), `the dashboard shows the Message-ID ${messageId}: ${shown}`);
      assert.match(got[0], /Sent by a grain with no network\./);

      // Receiving: mail to the grain's address over --smtp-listen lands in the grain's /var/mail.
      const replies = await smtpSend(smtpPort, "someone@example.org", address, "From: someone@example.org\nTo: " + address + "\nSubject: A reply\n\nThanks, grain.");
      assert.match(replies.at(-2), /^250/, `the message was accepted: ${replies.join(" | ")}`);
      const inbox = maildirMessages(join(server.dataDir, "grains", id, "var", "mail"));
      assert.equal(inbox.length, 1, "the grain's Maildir has the message");
      assert.match(inbox[0], /^Received: from tests\.example /, "the platform's Received field");
      assert.match(inbox[0], /Subject: A reply\r\n\r\nThanks, grain\./);
      // Mail to an address that is no grain's is refused.
      await assert.rejects(smtpSend(smtpPort, "someone@example.org", "nosuchgrain@granary.localhost", "Subject: x\n\ny"), /550/);
    },
  },
  {
    name: "powerbox: a powerboxRequest from anything but the grain frame is ignored",
    timeout: TIMEOUT,
    async run(t) {
      const { server, admin, dashboardApp } = await powerboxServer(t);
      const { frame } = await dashboardGrain(admin, server, dashboardApp);
      const asked = [];
      admin.on("request", (r) => { if (r.method() === "POST" && /\/powerbox\/options$/.test(new URL(r.url()).pathname)) asked.push(r.url()); });
      // A valid request (the dashboard's own descriptor), posted by the shell page itself and by
      // a frame nested in the grain frame (the grain's own origin, but not the grain frame's
      // window); the test's own listener on the shell page sees both arrive.
      const { descriptor } = await frame.evaluate(() => fetch("/descriptor?kind=notes").then((r) => r.json()));
      const msg = { powerboxRequest: { rpcId: 7, query: [descriptor], saveLabel: "forged" } };
      await admin.evaluate(() => {
        window.__forged = [];
        addEventListener("message", (e) => { if (e.data && e.data.powerboxRequest) window.__forged.push(e.origin); });
      });
      await admin.evaluate((m) => window.postMessage(m, "*"), msg);
      await frame.evaluate(() => { const f = document.createElement("iframe"); f.id = "nested"; document.body.append(f); });
      const nested = await (await frame.locator("iframe#nested").elementHandle()).contentFrame();
      await nested.evaluate((m) => window.top.postMessage(m, "*"), msg);
      const origins = await until("both forged messages to arrive", async () => { const o = await admin.evaluate(() => window.__forged); return o.length === 2 && o; });
      assert.deepEqual(origins, [server.baseUrl, new URL(frame.url()).origin], "the forged messages' origins: the shell's, then the grain session's");
      // The real frame's request, sent after them, is the only one the shell acts on.
      const dialog = await openDialog(admin, frame, "#connect-notes");
      await expectText(dialog.locator("#powerbox-asked"), "“notes” API");
      assert.equal(asked.length, 1, `the shell asked for options ${asked.length} times`);
    },
  },
];

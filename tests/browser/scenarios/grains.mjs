// Grains of the Echo sample app: creating one, its frame on its own origin, renaming,
// restarting, the trash, deleting, and a grain that does not exist.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { assert, cookie, expectHidden, expectPath, expectStatus, expectText } from "../lib/expect.mjs";
import { ADMIN, grainAction, grainFrame, installEcho, items, newGrain, setupAdmin, submit } from "../lib/flows.mjs";
import { GRAIN_HOST, echoPackage } from "../lib/server.mjs";

const GRAIN_TIMEOUT = 90_000;

/** A server with the administrator signed in on `page`, Echo installed through the UI and one new grain open. */
async function echoGrain(t, title) {
  const gpk = echoPackage();
  const server = await t.startServer({ host: GRAIN_HOST });
  const page = await t.newPage();
  await setupAdmin(page, server);
  const packageId = await installEcho(page, server, gpk);
  const grainId = await newGrain(page, "New echo", title);
  await expectText(page.locator(".grainbar"), "Echo", { what: "the grain bar's app name" });
  const frame = await grainFrame(page);
  return { server, page, packageId, grainId, frame };
}

/** Adds a note through the form in the Echo frame and waits for the list to show it. */
async function addNote(frame, text) {
  await frame.locator("#note-input").fill(text);
  await frame.locator("#add-note").click();
  await expectText(frame.locator("#notes li"), text, { what: "the grain's notes" });
}

/** The rows of the home page's grain list (not the trash): [title, app]. */
async function liveRows(page) {
  return page.locator("main > h1 + .card table.grains tbody tr").evaluateAll((rows) => rows.map((r) => [...r.cells].slice(0, 2).map((c) => c.textContent.trim())));
}

/** The titles in the home page's Trash section. */
async function trashRows(page) {
  const trash = page.locator("main h2.section", { hasText: "Trash" });
  if ((await trash.count()) === 0) return [];
  return page.locator("main h2.section + .card table.grains tbody tr td:first-child").allTextContents();
}

async function goHome(page) {
  await page.locator("header nav").getByRole("link", { name: "Grains" }).click();
  await expectPath(page, "/");
  await expectText(page.locator("h1"), "Your grains");
}

export const scenarios = [
  {
    name: "grains: a new Echo grain opens in its own origin and sees who is using it",
    timeout: GRAIN_TIMEOUT,
    async run(t) {
      const { server, page, grainId, frame } = await echoGrain(t, "Lab notebook");

      // The frame is on a session origin of the wildcard host, not the shell's.
      const shell = new URL(server.baseUrl);
      const origin = new URL(frame.url());
      assert.equal(shell.hostname, GRAIN_HOST);
      assert.match(origin.hostname, /^[0-9ac-hjkmnp-z]{24}\.granary\.localhost$/, `the frame's host ${origin.host}`);
      assert.equal(origin.port, shell.port, "the frame is served on the shell's port");
      assert.notEqual(origin.host, shell.host, "the frame must not share the shell's origin");
      // Cross-origin in fact: the grain cannot reach into the shell's page, and the cookies are host-only.
      assert.equal(await frame.evaluate(() => { try { return window.parent.document.title; } catch { return "blocked"; } }), "blocked", "the grain frame could read the shell's page");
      assert.ok((await page.context().cookies(origin.origin)).some((c) => c.name === "granary_grain"), "the session origin has its granary_grain cookie");
      assert.equal((await page.context().cookies(origin.origin)).find((c) => c.name === "granary_sid"), undefined, "granary_sid must not reach the grain's origin");
      assert.equal(await cookie(page.context(), "granary_grain").then((c) => c && c.domain), origin.hostname, "granary_grain is host-only on the session origin");

      // The identity the grain received: the owner's display name and handle, every permission.
      await expectText(frame.locator("#username"), ADMIN.displayName, { what: "the echoed X-Granary-Username" });
      assert.equal((await frame.locator("#username").innerText()).trim(), ADMIN.displayName);
      assert.equal((await frame.locator("#user-handle").innerText()).trim(), ADMIN.username, "the echoed handle");
      assert.equal((await frame.locator("#can-edit").innerText()).trim(), "yes", "the owner can edit");
      assert.deepEqual(await items(frame.locator("#permissions")), ["edit", "admin"], "the owner holds every permission");
      const userId = (await frame.locator("#user-id").innerText()).trim();
      assert.match(userId, /^[0-9a-f]{32}$/, "the grain-specific user id");
      assert.ok(!(await frame.locator("#session-id").innerText()).includes(grainId), "the session id is not the grain id");

      // /var works: a note is kept and listed.
      await addNote(frame, "Planted the tomatoes");
      await addNote(frame, "Watered them");
      assert.deepEqual(await items(frame.locator("#notes")), ["Planted the tomatoes", "Watered them"], "the notes in order");
      await t.screenshot(page, "14-grain-open");

      // The grain list shows it, and its title opens it again (a new session origin).
      await goHome(page);
      assert.deepEqual(await liveRows(page), [["Lab notebook", "Echo"]], "the grain list");
      assert.deepEqual(await trashRows(page), [], "nothing in the trash");
      await t.screenshot(page, "13-grain-list");
      await page.locator("table.grains").getByRole("link", { name: "Lab notebook" }).click();
      await expectPath(page, `/grains/${grainId}`);
      const again = await grainFrame(page);
      assert.notEqual(new URL(again.url()).host, origin.host, "opening the grain again makes a new session origin");
      assert.deepEqual(await items(again.locator("#notes")), ["Planted the tomatoes", "Watered them"], "the notes after reopening");
    },
  },
  {
    name: "grains: rename in the top bar, restart, and the notes survive",
    timeout: GRAIN_TIMEOUT,
    async run(t) {
      const { page, grainId, frame } = await echoGrain(t, "Untitled");
      await addNote(frame, "kept across restarts");

      // Rename.
      await page.locator('.grainbar input[name="title"]').fill("Garden plans");
      expectStatus(await grainAction(page, grainId, "Rename", "rename"), 303, "renaming the grain");
      await expectPath(page, `/grains/${grainId}`);
      assert.equal(await page.locator('.grainbar input[name="title"]').inputValue(), "Garden plans", "the title field after renaming");
      assert.equal(await page.title(), "Garden plans · Granary", "the page title after renaming");
      await grainFrame(page);
      await goHome(page);
      assert.deepEqual(await liveRows(page), [["Garden plans", "Echo"]], "the grain list after renaming");

      // Restart: the app is stopped, the frame loads again and starts it, the note is still there.
      await page.locator("table.grains").getByRole("link", { name: "Garden plans" }).click();
      await expectPath(page, `/grains/${grainId}`);
      const before = await grainFrame(page);
      const beforeHost = new URL(before.url()).host;
      // The page is rendered while the grain is stopped ("starting": its frame starts it); once
      // the frame has loaded, the bar says "running" without a reload. (The page before the
      // restart was rendered "running", so it asks nothing.)
      const stateRequest = page.waitForResponse((r) => new URL(r.url()).pathname === `/grains/${grainId}/state`);
      expectStatus(await grainAction(page, grainId, "Restart", "restart"), 303, "restarting the grain");
      await expectPath(page, `/grains/${grainId}`);
      const after = await grainFrame(page);
      expectStatus(await stateRequest, 200, "the state asked for once the frame loaded");
      await expectText(page.locator(".grainbar .state"), "running", { what: "the grain's state once its frame loaded" });
      assert.notEqual(new URL(after.url()).host, beforeHost, "the reloaded page frames a new session");
      assert.equal((await after.locator("#username").innerText()).trim(), ADMIN.displayName, "the identity after the restart");
      assert.deepEqual(await items(after.locator("#notes")), ["kept across restarts"], "the notes after the restart");
      await addNote(after, "and after");
      await page.reload();
      await expectText(page.locator(".grainbar .state"), "running", { what: "the grain's state once it was used" });
    },
  },
  {
    name: "grains: the owner's debug log shows the app's output live",
    timeout: GRAIN_TIMEOUT,
    async run(t) {
      const { page, frame } = await echoGrain(t, "Log check");
      await addNote(frame, "first line of work");
      const panel = page.locator("#grain-log");
      await panel.locator("summary").click();
      // Echo prints where it listens when it starts; the platform logs the app's start.
      await expectText(page.locator("#grain-log-text"), "listening on 127.0.0.1:8000", { what: "the grain's debug log", timeout: 20_000 });
      await expectText(page.locator("#grain-log-text"), "app started (sandbox pid", { what: "the supervisor's lifecycle lines in the log" });
      await t.screenshot(page, "17-grain-log");
    },
  },
  {
    name: "grains: a made-up grain address shows grain not found",
    async run(t) {
      const server = await t.startServer();
      const page = await t.newPage();
      await setupAdmin(page, server);
      for (const id of ["0123456789acdefghjkmnpqr", "not-a-grain"]) {
        const resp = await page.goto(server.url(`/grains/${id}`));
        expectStatus(resp, 404, `GET /grains/${id}`);
        await expectText(page.locator("h1"), "Grain not found");
        await expectText(page.locator("main"), "There is no grain at this address, or it is not shared with you.");
        assert.equal(await page.locator("iframe").count(), 0, "no frame on the not-found page");
      }
      await t.screenshot(page, "16-grain-not-found");
      await page.getByRole("link", { name: "Back to Granary" }).click();
      await expectPath(page, "/");
    },
  },
  {
    name: "grains: trash, restore, then delete from the trash",
    timeout: GRAIN_TIMEOUT,
    async run(t) {
      const { server, page, grainId, frame } = await echoGrain(t, "Old drafts");
      await addNote(frame, "draft one");
      const storage = join(server.dataDir, "grains", grainId);
      assert.ok(existsSync(join(storage, "var")), `the grain's storage ${storage} exists`);

      // Move to trash: back on home, the grain is only in the Trash section.
      expectStatus(await grainAction(page, grainId, "Move to trash", "trash"), 303, "moving the grain to the trash");
      await expectPath(page, "/");
      await expectText(page.locator("main"), "No grains yet");
      await expectText(page.locator("main h2.section"), "Trash");
      assert.deepEqual(await liveRows(page), [], "the grain list without the trashed grain");
      assert.deepEqual(await trashRows(page), ["Old drafts"], "the trash");
      await t.screenshot(page, "15-trash");
      // Its page says so and frames nothing.
      await page.goto(server.url(`/grains/${grainId}`));
      await expectText(page.locator("main"), "This grain is in the trash");
      assert.equal(await page.locator("iframe").count(), 0, "a trashed grain is not framed");

      // Restore (from home): it opens again, with its notes.
      await goHome(page);
      const row = page.locator("main h2.section + .card tr", { hasText: "Old drafts" });
      expectStatus(await submit(page, row.getByRole("button", { name: "Restore" }), `/grains/${grainId}/restore`), 303, "restoring");
      await expectPath(page, `/grains/${grainId}`);
      const back = await grainFrame(page);
      assert.deepEqual(await items(back.locator("#notes")), ["draft one"], "the notes after restoring");
      await goHome(page);
      assert.deepEqual(await liveRows(page), [["Old drafts", "Echo"]], "the grain list after restoring");
      assert.deepEqual(await trashRows(page), [], "the trash after restoring");

      // Delete forever asks first: dismissing keeps it.
      await page.goto(server.url(`/grains/${grainId}`));
      expectStatus(await grainAction(page, grainId, "Move to trash", "trash"), 303, "trashing again");
      await expectPath(page, "/");
      const questions = [];
      const deleteButton = page.locator("main h2.section + .card tr", { hasText: "Old drafts" }).getByRole("button", { name: "Delete forever" });
      page.once("dialog", (d) => { questions.push(d.message()); d.dismiss(); });
      let posted = false;
      const onRequest = (r) => { if (r.method() === "POST") posted = true; };
      page.on("request", onRequest);
      await deleteButton.click();
      await expectText(page.locator("main h2.section"), "Trash");
      page.off("request", onRequest);
      assert.equal(posted, false, "dismissing the confirmation must not submit the form");
      assert.deepEqual(await trashRows(page), ["Old drafts"], "the trash after dismissing");

      // Accepting deletes it: gone from the page, its storage removed, its address not found.
      page.once("dialog", (d) => { questions.push(d.message()); d.accept(); });
      expectStatus(await submit(page, deleteButton, `/grains/${grainId}/delete`), 303, "deleting");
      await expectPath(page, "/");
      assert.deepEqual(questions, ["Delete this grain and all its data for good?", "Delete this grain and all its data for good?"], "the confirmation dialogs");
      await expectHidden(page.locator("main h2.section"), { what: "the Trash section after deleting its only grain" });
      await expectText(page.locator("main"), "No grains yet");
      assert.deepEqual(await liveRows(page), [], "the grain list after deleting");
      assert.equal(existsSync(storage), false, `the grain's storage ${storage} is deleted`);
      const gone = await page.goto(server.url(`/grains/${grainId}`));
      expectStatus(gone, 404, "the deleted grain's page");
      await expectText(page.locator("h1"), "Grain not found");
    },
  },
];

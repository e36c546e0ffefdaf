// Installing apps through the upload form, and their pages.
import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, expectHidden, expectPath, expectStatus, expectText } from "../lib/expect.mjs";
import { setupAdmin, uploadPackage } from "../lib/flows.mjs";
import { makePackage } from "../lib/server.mjs";

export const scenarios = [
  {
    name: "upload and install an app through the UI",
    async run(t) {
      const server = await t.startServer();
      const pkg = makePackage({ title: "Test Board", payloadBytes: 4 << 20 });
      t.defer(pkg.cleanup);
      const page = await t.newPage();
      await setupAdmin(page, server);
      await page.locator("header nav").getByRole("link", { name: "Apps" }).click();
      await expectPath(page, "/apps");
      await expectText(page.locator("main"), "No apps installed");
      // The upload card and the empty-list card do not touch (a <script> sits between them).
      const upload = await page.locator(".card.upload").boundingBox();
      const empty = await page.locator(".card.empty").boundingBox();
      assert.ok(empty.y - (upload.y + upload.height) >= 12, `the two cards are ${empty.y - (upload.y + upload.height)} px apart`);
      await t.screenshot(page, "08-apps-empty");

      const uploaded = await uploadPackage(page, server, pkg.path);
      expectStatus(uploaded.response, 200, "the upload");

      // The page lands on the app's details page.
      await expectPath(page, /^\/apps\/[0-9a-zA-Z_-]+$/);
      const url = new URL(page.url()).pathname;
      const packageId = url.slice("/apps/".length);
      await expectText(page.locator("h1"), "Test Board");
      await expectText(page.locator(".apphead"), "Version 1.2 (3)");
      await expectText(page.locator("main"), "Cards in columns, for browser tests");
      await expectText(page.locator("table.facts"), pkg.appId);
      await expectText(page.locator("table.facts"), packageId);
      const roles = page.locator(".card").filter({ has: page.locator("h2", { hasText: "Sharing roles" }) });
      await expectText(roles.locator("li"), /Viewer\s+—\s+Can look at the board/, { what: "the Viewer role" });
      await expectText(roles.locator("li"), /Editor\s+\(default\)/, { what: "the Editor role" });
      await expectText(roles.locator("li"), "Edit cards", { what: "the edit permission" });
      const icon = page.locator("img.icon");
      await icon.waitFor();
      assert.ok(await icon.evaluate((img) => img.complete && img.naturalWidth > 0), "the app's icon loads");
      await t.screenshot(page, "10-app-details");

      // While it ran, the progress bar appeared and filled, and the status line said what happened.
      const events = await uploaded.events();
      const shown = events.filter((e) => e.barVisible);
      assert.ok(shown.length > 0, `the progress bar never appeared; events: ${JSON.stringify(events)}`);
      assert.equal(Math.max(...shown.map((e) => e.value)), 100, `the progress bar never reached 100; events: ${JSON.stringify(events)}`);
      const statuses = events.map((e) => e.status);
      assert.ok(statuses.some((s) => s.startsWith("Uploading app.gpk")), `no "Uploading" status: ${JSON.stringify(statuses)}`);
      assert.ok(statuses.includes("Installed Test Board."), `no "Installed" status: ${JSON.stringify(statuses)}`);

      // The list shows it and links to the same page.
      await page.locator("header nav").getByRole("link", { name: "Apps" }).click();
      await expectPath(page, "/apps");
      const card = page.locator(`a.app[href="${url}"]`);
      await expectText(card, "Test Board");
      await expectText(card, "Version 1.2 (3)");
      await t.screenshot(page, "09-apps");

      // Uploading the same package again says so and opens the same page.
      const again = await uploadPackage(page, server, pkg.path);
      expectStatus(again.response, 200, "the second upload");
      await expectPath(page, url);
      const said = (await again.events()).map((e) => e.status);
      assert.ok(said.includes("Test Board was already installed."), `no "already installed" status: ${JSON.stringify(said)}`);
      await page.goto(server.url("/apps"));
      assert.equal(await page.locator("a.app").count(), 1, "one app in the list after installing the same package twice");
    },
  },
  {
    name: "a file that is not a package is refused with a message",
    async run(t) {
      const server = await t.startServer();
      const dir = mkdtempSync(join(tmpdir(), "granary-notpkg-"));
      t.defer(() => rmSync(dir, { recursive: true, force: true }));
      const bogus = join(dir, "bogus.gpk");
      writeFileSync(bogus, "this is not a granary package\n".repeat(100));
      const page = await t.newPage();
      await setupAdmin(page, server);
      const { response } = await uploadPackage(page, server, bogus);
      expectStatus(response, 400, "uploading a non-package");
      // The status line shows the server's reason (not the fallback for replies without one).
      const status = page.locator("#upload-status.error");
      await expectText(status, /\S/, { what: "the upload status line" });
      const reason = await status.innerText();
      assert.doesNotMatch(reason, /The server answered/, "the status line shows the server's {error}, not the fallback");
      await expectHidden(page.locator("#upload-progress"), { what: "the progress bar after a refused upload" });
      assert.equal(await page.getByRole("button", { name: "Upload and install" }).isEnabled(), true, "the upload button is enabled again");
      await expectPath(page, "/apps");
      await expectText(page.locator("main"), "No apps installed");
      await t.screenshot(page, "12-upload-refused");
    },
  },
];

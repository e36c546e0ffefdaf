// The admin page.
import { assert, expectStatus, expectText } from "../lib/expect.mjs";
import { ADMIN, setupAdmin } from "../lib/flows.mjs";

/** The cells of the users table's rows, as arrays of strings. */
async function userRows(page) {
  return page.locator("main table tbody tr").evaluateAll((rows) => rows.map((r) => [...r.cells].map((c) => c.textContent.trim())));
}

export const scenarios = [
  {
    name: "/admin shows the users, including a second admin made in another browser",
    async run(t) {
      const server = await t.startServer();
      const page = await t.newPage();
      await setupAdmin(page, server);
      await page.locator("header nav").getByRole("link", { name: "Admin" }).click();
      await expectText(page.locator("h1"), "Server status");
      assert.equal(new URL(page.url()).pathname, "/admin");
      await expectText(page.locator(".stats .card").filter({ hasText: "Accounts" }), "1");
      await expectText(page.locator("main"), server.baseUrl);
      // The last cell holds the suspend button, never on one's own row.
      assert.deepEqual(await userRows(page), [[ADMIN.displayName, ADMIN.username, "Administrator", "Active", ""]], "the users table");
      // The stat cards sit in one row, top-aligned (the grid's gap spaces them, not card margins).
      const tops = await page.locator(".stats .card").evaluateAll((cards) => cards.map((c) => Math.round(c.getBoundingClientRect().top)));
      assert.equal(new Set(tops).size, 1, `the stat cards' tops differ: ${tops}`);
      await t.screenshot(page, "11-admin");

      // `granary admin-token` makes a recovery link; a second person uses it in their own browser.
      const grace = { username: "grace", displayName: "Grace Hopper", password: "another long password" };
      const other = await t.newPage();
      await setupAdmin(other, server, grace, server.adminToken());
      const resp = await page.reload();
      expectStatus(resp, 200, "reloading /admin");
      await expectText(page.locator(".stats .card").filter({ hasText: "Accounts" }), "2");
      assert.deepEqual(
        await userRows(page),
        [[ADMIN.displayName, ADMIN.username, "Administrator", "Active", ""], [grace.displayName, grace.username, "Administrator", "Active", "Suspend"]],
        "the users table after the second setup",
      );
      // Each browser is still signed in as its own person.
      await expectText(other.locator("header .who"), grace.displayName);
      await expectText(page.locator("header .who"), ADMIN.displayName);
    },
  },
];

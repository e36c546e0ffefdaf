// First run, signing in and out, refused sign-ins, the one-time setup link.
import { assert, cookie, expectPath, expectStatus, expectText } from "../lib/expect.mjs";
import { ADMIN, SESSION_COOKIE, expectSignedInHome, login, loginRefused, logout, setupAdmin } from "../lib/flows.mjs";

const WRONG = "Wrong username or password.";

export const scenarios = [
  {
    name: "first-run admin setup through the printed link",
    async run(t) {
      const server = await t.startServer();
      const page = await t.newPage();
      const resp = await page.goto(server.url("/"));
      expectStatus(resp, 200, "home before setup");
      await expectText(page.locator("h1"), "Welcome to Granary");
      await expectText(page.locator("main"), "granary admin-token");
      await t.screenshot(page, "01-not-set-up");
      assert.deepEqual([server.status().users, server.status().admins], [0, 0], "no accounts before setup");

      await page.goto(server.setupUrl);
      // Inputs do not inherit their label's bold font; a card's first element adds no top margin.
      const weights = await page.locator("form.stack input:not([type=hidden])").evaluateAll((is) => is.map((i) => getComputedStyle(i).fontWeight));
      assert.deepEqual([...new Set(weights)], ["400"], "the setup form's inputs are not bold");
      assert.equal(await page.locator(".card > :first-child").evaluate((e) => getComputedStyle(e).marginTop), "0px", "the card's first element has no top margin");
      await t.screenshot(page, "02-setup");
      await setupAdmin(page, server);
      await expectText(page.locator("main"), "No grains yet");
      await t.screenshot(page, "04-home");
      const s = server.status();
      assert.deepEqual([s.users, s.admins], [1, 1], "granary status counts the new administrator");
      assert.equal(s.base_url, server.baseUrl);
    },
  },
  {
    name: "sign out, then sign in again",
    async run(t) {
      const server = await t.startServer();
      const page = await t.newPage();
      await setupAdmin(page, server);
      await logout(page);
      await t.screenshot(page, "03-login");
      // Signed out, the signed-in pages send the browser to the sign-in page.
      for (const path of ["/", "/admin", "/apps"]) {
        await page.goto(server.url(path));
        await expectPath(page, "/login");
      }
      await login(page, server);
      // The session survives a reload and a new tab in the same context.
      const tab = await page.context().newPage();
      await tab.goto(server.url("/"));
      await expectSignedInHome(tab, ADMIN);
    },
  },
  {
    name: "a wrong password shows the generic message",
    async run(t) {
      const server = await t.startServer();
      await setupAdmin(await t.newPage(), server);
      const page = await t.newPage();
      await loginRefused(page, server, ADMIN.username, "not the password", 401, WRONG);
      await t.screenshot(page, "05-login-wrong-password");
      // An unknown name gets exactly the same answer.
      await loginRefused(page, server, "nobody", "not the password", 401, WRONG);
      // Usernames are case-folded; the right password still works after two failures.
      await login(page, server, { ...ADMIN, username: ADMIN.username.toUpperCase() });
    },
  },
  {
    name: "rate limiting after 5 failed sign-ins refuses even the right password",
    async run(t) {
      const server = await t.startServer();
      const adminPage = await t.newPage();
      await setupAdmin(adminPage, server);
      const page = await t.newPage();
      for (let i = 1; i <= 5; i++) {
        await loginRefused(page, server, ADMIN.username, `wrong ${i}`, 401, WRONG);
      }
      await loginRefused(page, server, ADMIN.username, ADMIN.password, 429, "Too many failed attempts. Try again in 15 minutes.");
      await t.screenshot(page, "06-login-rate-limited");
      // The limit is on signing in: the administrator's existing session keeps working.
      await adminPage.reload();
      await expectSignedInHome(adminPage, ADMIN);
    },
  },
  {
    name: "a used setup link says it no longer works",
    async run(t) {
      const server = await t.startServer();
      await setupAdmin(await t.newPage(), server);
      const page = await t.newPage();
      const resp = await page.goto(server.setupUrl);
      expectStatus(resp, 404, "the used setup link");
      await expectText(page.locator("h1"), "This setup link does not work");
      await expectText(page.locator("main"), "It was already used");
      assert.equal(await page.locator("form").count(), 0, "the used link must not show a form");
      assert.equal(await cookie(page.context(), SESSION_COOKIE), undefined);
      await t.screenshot(page, "07-setup-link-used");
      // A made-up token is treated the same way.
      const bogus = await page.goto(server.url(`/setup/${"0".repeat(64)}`));
      expectStatus(bogus, 404, "a made-up setup link");
      await expectText(page.locator("h1"), "This setup link does not work");
    },
  },
];

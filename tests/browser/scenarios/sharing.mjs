// Sharing an Echo grain through links (SPEC.md "Sharing"), with people made through invitations
// ("Administration"), each in their own browser context: roles reach the app, revoking a link or
// suspending a person ends their open sessions at once, anonymous visitors stay anonymous, and a
// re-share never grants more than its creator holds.
import { assert, cookie, expectPath, expectStatus, expectText } from "../lib/expect.mjs";
import { SESSION_COOKIE, grainFrame, installEcho, items, tryLogin, newGrain, setupAdmin, submit } from "../lib/flows.mjs";
import { GRAIN_HOST, echoPackage } from "../lib/server.mjs";

const TIMEOUT = 120_000;
const PASSWORD = "a long enough password";
const ROLE = { viewer: "0", editor: "1", owner: "2" };
/** What the gateway answers a session it has closed (proxy.rs): 404 ended or 403 access ended. */
const REFUSED = /This grain session has ended|Access to this grain has ended/;

/** A server, the admin (owner) signed in on `owner`, Echo installed and one grain open. */
async function sharedGrain(t, title = "Reading list") {
  const gpk = echoPackage();
  const server = await t.startServer({ host: GRAIN_HOST });
  const owner = await t.newPage();
  await setupAdmin(owner, server);
  await installEcho(owner, server, gpk);
  const grainId = await newGrain(owner, "New echo", title);
  const frame = await grainFrame(owner);
  return { server, owner, grainId, frame };
}

/** The admin creates an invitation on /admin; `person` accepts it in a new context. Returns their page. */
async function invite(t, server, admin, person) {
  const resp = await admin.goto(server.url("/admin"));
  expectStatus(resp, 200, "/admin");
  expectStatus(await submit(admin, admin.getByRole("button", { name: "Create an invitation link" }), "/admin/invite"), 200, "creating an invitation");
  const url = await admin.locator("#invite-url").inputValue();
  assert.match(url, new RegExp(`^${server.baseUrl.replace(/[.]/g, "\\.")}/invite/[^/]+$`), "the invitation link");
  const page = await t.newPage();
  expectStatus(await page.goto(url), 200, "the invitation page");
  await expectText(page.locator("h1"), "Create your account");
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

/** On the grain page, follows "Share" and creates a link with `role`; returns its URL. */
async function createLink(page, server, grainId, role, label, shot) {
  if (new URL(page.url()).pathname !== `/grains/${grainId}/access`) {
    expectStatus(await page.goto(server.url(`/grains/${grainId}`)), 200, "the grain page");
    await page.locator(".grainbar").getByRole("link", { name: "Share" }).click();
    await expectPath(page, `/grains/${grainId}/access`);
  }
  const form = page.locator("form.share");
  await form.locator('select[name="role"]').selectOption(role);
  await form.locator('input[name="label"]').fill(label);
  const resp = await submit(page, form.getByRole("button", { name: "Create link" }), `/grains/${grainId}/share`);
  assert.ok([200, 303].includes(resp.status()), `creating a link: HTTP ${resp.status()}`);
  const url = await page.locator("#new-link-url").inputValue();
  assert.match(url, /\/share\/[^/]+$/, "the new link's URL");
  assert.ok(url.startsWith(server.baseUrl + "/share/"), `the link ${url} is on the base URL ${server.baseUrl}`);
  if (shot) await shot(page);
  return url;
}

/** A signed-in person opens `url` and picks reveal/anonymous on the choice page. */
async function openLink(page, url, mode, shot) {
  expectStatus(await page.goto(url), 200, "the sharing link");
  await expectText(page.locator("h1"), "Open “");
  if (shot) await shot(page);
  const token = new URL(url).pathname;
  const resp = await submit(page, page.locator(`button[name="mode"][value="${mode}"]`), token);
  return resp;
}

/** The echo frame's identity: {userId, userIdAbsent, username, canEdit, permissions}. */
async function identity(frame) {
  return {
    userId: (await frame.locator("#user-id").textContent()).trim(),
    userIdAbsent: (await frame.locator("#user-id").getAttribute("data-absent")) !== null,
    username: (await frame.locator("#username").textContent()).trim(),
    canEdit: (await frame.locator("#can-edit").textContent()).trim(),
    permissions: await items(frame.locator("#permissions")),
  };
}

async function addNote(frame, text) {
  await frame.locator("#note-input").fill(text);
  await frame.locator("#add-note").click();
}

const bob = { username: "bob", displayName: "Bob Viewer", password: PASSWORD };
const cat = { username: "cat", displayName: "Cat Editor", password: PASSWORD };

export const scenarios = [
  {
    name: "sharing: a viewer link opened as oneself shows the name, refuses notes and lists the grain",
    timeout: TIMEOUT,
    async run(t) {
      const { server, owner, grainId } = await sharedGrain(t);
      const url = await createLink(owner, server, grainId, ROLE.viewer, "For Bob", (p) => t.screenshot(p, "30-share-new-link"));
      const viewer = await invite(t, server, owner, bob);

      const resp = await openLink(viewer, url, "reveal", (p) => t.screenshot(p, "31-share-choice"));
      expectStatus(resp, 303, "opening the link as oneself");
      await expectPath(viewer, `/grains/${grainId}`);
      const frame = await grainFrame(viewer);
      const who = await identity(frame);
      assert.equal(who.username, bob.displayName, "the app sees the viewer's name");
      assert.equal(who.userIdAbsent, false, "a revealed viewer has a user id");
      assert.match(who.userId, /^[0-9a-f]{32}$/, "the viewer's user id");
      assert.equal(who.canEdit, "no", "#can-edit for a viewer");
      assert.deepEqual(who.permissions, [], "a viewer holds no permissions");

      await addNote(frame, "from bob");
      await expectText(frame.locator("body"), 'adding a note needs the "edit" permission', { what: "the app's refusal" });

      await viewer.goto(server.url("/"));
      await expectText(viewer.locator("#shared"), "Reading list", { what: "Shared with me" });
      await viewer.locator("#shared").getByRole("link", { name: "Reading list" }).click();
      await expectPath(viewer, `/grains/${grainId}`);

      // The owner's access page lists the link and Bob.
      expectStatus(await owner.goto(server.url(`/grains/${grainId}/access`)), 200, "the access page");
      await expectText(owner.locator("#links tr[data-link]"), "For Bob");
      await expectText(owner.locator("#people"), "Bob Viewer");
      await t.screenshot(owner, "32-share-access-page");
    },
  },
  {
    name: "sharing: an editor link lets a third person add a note the owner sees",
    timeout: TIMEOUT,
    async run(t) {
      const { server, owner, grainId } = await sharedGrain(t);
      const url = await createLink(owner, server, grainId, ROLE.editor, "For Cat");
      const editor = await invite(t, server, owner, cat);
      expectStatus(await openLink(editor, url, "reveal"), 303, "opening the editor link");
      await expectPath(editor, `/grains/${grainId}`);
      const frame = await grainFrame(editor);
      const who = await identity(frame);
      assert.equal(who.username, cat.displayName);
      assert.equal(who.canEdit, "yes", "#can-edit for an editor");
      assert.deepEqual(who.permissions, ["edit"], "an editor's permissions");
      await addNote(frame, "cat was here");
      await expectText(frame.locator("#notes li"), "cat was here");

      expectStatus(await owner.goto(server.url(`/grains/${grainId}`)), 200, "the owner's grain page");
      const mine = await grainFrame(owner);
      assert.deepEqual(await items(mine.locator("#notes")), ["cat was here"], "the owner sees the editor's note");
    },
  },
  {
    name: "sharing: revoking a link ends the open session at once",
    timeout: TIMEOUT,
    async run(t) {
      const { server, owner, grainId } = await sharedGrain(t);
      const url = await createLink(owner, server, grainId, ROLE.editor, "Revocable");
      const viewer = await invite(t, server, owner, bob);
      expectStatus(await openLink(viewer, url, "reveal"), 303, "opening the link");
      await expectPath(viewer, `/grains/${grainId}`);
      const frame = await grainFrame(viewer);
      await addNote(frame, "before revoking");
      await expectText(frame.locator("#notes li"), "before revoking");

      // The owner revokes it.
      expectStatus(await owner.goto(server.url(`/grains/${grainId}/access`)), 200, "the access page");
      const row = owner.locator("#links tr[data-link]", { hasText: "Revocable" });
      const linkId = await row.getAttribute("data-link");
      const rev = await submit(owner, row.getByRole("button", { name: "Revoke" }), `/grains/${grainId}/links/${linkId}/revoke`);
      assert.ok([200, 303].includes(rev.status()), `revoking: HTTP ${rev.status()}`);
      await expectText(owner.locator(`#links tr[data-link="${linkId}"]`), "revoked");

      // The viewer's shell page is untouched; the next request in the frame is refused.
      const shellUrl = viewer.url();
      const [resp] = await Promise.all([
        viewer.waitForResponse((r) => r.request().method() === "POST" && new URL(r.url()).pathname === "/notes"),
        addNote(frame, "after revoking"),
      ]);
      assert.ok([403, 404].includes(resp.status()), `the note after revoking: HTTP ${resp.status()}`);
      await expectText(frame.locator("body"), REFUSED, { what: "the frame after revoking" });
      assert.equal(viewer.url(), shellUrl, "the shell page was not reloaded");
      const reload = await frame.goto(new URL("/", frame.url()).href);
      assert.ok([403, 404].includes(reload.status()), `reloading the frame after revoking: HTTP ${reload.status()}`);

      // The grain page is gone for them, and the link itself is dead.
      const page = await viewer.goto(server.url(`/grains/${grainId}`));
      expectStatus(page, 404, "the grain page after revoking");
      await expectText(viewer.locator("h1"), "Grain not found");
      expectStatus(await viewer.goto(url), 404, "the revoked link");
      await expectText(viewer.locator("h1"), "This sharing link does not work");

      // The owner still has the note written before.
      expectStatus(await owner.goto(server.url(`/grains/${grainId}`)), 200, "the owner's grain page");
      assert.deepEqual(await items((await grainFrame(owner)).locator("#notes")), ["before revoking"], "the notes");
    },
  },
  {
    name: "sharing: lowering a link's role ends the open session; reopening gives the new role",
    timeout: TIMEOUT,
    async run(t) {
      const { server, owner, grainId } = await sharedGrain(t);
      const url = await createLink(owner, server, grainId, ROLE.editor, "Demotable");
      const editor = await invite(t, server, owner, cat);
      expectStatus(await openLink(editor, url, "reveal"), 303, "opening the link");
      await expectPath(editor, `/grains/${grainId}`);
      const frame = await grainFrame(editor);
      assert.equal((await identity(frame)).canEdit, "yes");

      expectStatus(await owner.goto(server.url(`/grains/${grainId}/access`)), 200, "the access page");
      const row = owner.locator("#links tr[data-link]", { hasText: "Demotable" });
      const linkId = await row.getAttribute("data-link");
      await row.locator('select[name="role"]').selectOption(ROLE.viewer);
      const change = await submit(owner, row.getByRole("button", { name: "Change" }), `/grains/${grainId}/links/${linkId}/role`);
      assert.ok([200, 303].includes(change.status()), `changing the role: HTTP ${change.status()}`);
      assert.equal(await owner.locator(`#links tr[data-link="${linkId}"] select[name="role"]`).inputValue(), ROLE.viewer, "the link's role after changing it");

      const shellUrl = editor.url();
      await addNote(frame, "after demotion");
      await expectText(frame.locator("body"), REFUSED, { what: "the frame after lowering the role" });
      assert.equal(editor.url(), shellUrl, "the shell page was not reloaded");

      // Reopening the grain gives a viewer's session.
      expectStatus(await editor.goto(server.url(`/grains/${grainId}`)), 200, "reopening the grain");
      const again = await identity(await grainFrame(editor));
      assert.equal(again.canEdit, "no", "#can-edit after lowering the role");
      assert.deepEqual(again.permissions, [], "the permissions after lowering the role");
    },
  },
  {
    name: "sharing: anonymous visitors and people who do not reveal themselves stay anonymous",
    timeout: TIMEOUT,
    async run(t) {
      const { server, owner, grainId } = await sharedGrain(t);
      const url = await createLink(owner, server, grainId, ROLE.viewer, "Public");

      // Not signed in: the frame at once.
      const stranger = await t.newPage();
      expectStatus(await stranger.goto(url), 200, "the link, signed out");
      await expectText(stranger.locator(".grainbar"), "shared with you");
      const anon = await identity(await grainFrame(stranger));
      assert.equal(anon.userIdAbsent, true, "an anonymous visitor has no user id");
      assert.equal(anon.userId, "", "#user-id of an anonymous visitor");
      assert.equal(anon.username, "Anonymous visitor", "the anonymous name");
      assert.equal(anon.canEdit, "no");

      // Signed in, but choosing not to reveal.
      const shy = await invite(t, server, owner, bob);
      const resp = await openLink(shy, url, "anonymous");
      assert.ok([200, 303].includes(resp.status()), `opening anonymously: HTTP ${resp.status()}`);
      await expectText(shy.locator(".grainbar"), "you are anonymous to this grain");
      const who = await identity(await grainFrame(shy));
      assert.deepEqual(who, anon, "a signed-in person who does not reveal is seen like a stranger");
      await shy.goto(server.url("/"));
      await expectText(shy.locator("h1"), "Your grains");
      assert.equal(await shy.locator("#shared").count(), 0, "the grain is not under Shared with me");
      expectStatus(await shy.goto(server.url(`/grains/${grainId}`)), 404, "the grain page without a grant");
      expectStatus(await owner.goto(server.url(`/grains/${grainId}/access`)), 200, "the access page");
      assert.equal(await owner.locator("#people").count(), 0, "nobody is listed as a person with access");
    },
  },
  {
    name: "sharing: a viewer can re-share only as a viewer",
    timeout: TIMEOUT,
    async run(t) {
      const { server, owner, grainId } = await sharedGrain(t);
      const url = await createLink(owner, server, grainId, ROLE.viewer, "For Bob");
      const viewer = await invite(t, server, owner, bob);
      expectStatus(await openLink(viewer, url, "reveal"), 303, "opening the link");
      await expectPath(viewer, `/grains/${grainId}`);
      await grainFrame(viewer);
      await viewer.locator(".grainbar").getByRole("link", { name: "Share" }).click();
      await expectPath(viewer, `/grains/${grainId}/access`);
      const options = await viewer.locator('form.share select[name="role"] option').evaluateAll((os) => os.map((o) => [o.value, o.disabled]));
      assert.deepEqual(options, [[ROLE.viewer, false], [ROLE.editor, true], [ROLE.owner, true]], "the role options a viewer may hand out");
      // The viewer sees only the links they made (none yet).
      assert.equal(await viewer.locator("#links tr[data-link]").count(), 0, "a viewer does not see the owner's links");
      const again = await createLink(viewer, server, grainId, ROLE.viewer, "Bob's friend");
      assert.notEqual(again, url);
      await expectText(viewer.locator("#links tr[data-link]"), "Bob's friend");
      // It works, and grants viewing only.
      const friend = await t.newPage();
      expectStatus(await friend.goto(again), 200, "the re-shared link");
      assert.equal((await identity(await grainFrame(friend))).canEdit, "no");
    },
  },
  {
    name: "sharing: suspending a person signs them out and ends their grain session",
    timeout: TIMEOUT,
    async run(t) {
      const { server, owner, grainId } = await sharedGrain(t);
      const url = await createLink(owner, server, grainId, ROLE.editor, "For Bob");
      const viewer = await invite(t, server, owner, bob);
      expectStatus(await openLink(viewer, url, "reveal"), 303, "opening the link");
      await expectPath(viewer, `/grains/${grainId}`);
      const frame = await grainFrame(viewer);
      const before = await cookie(viewer.context(), SESSION_COOKIE);

      expectStatus(await owner.goto(server.url("/admin")), 200, "/admin");
      const row = owner.locator(`tr[data-user="${bob.username}"]`);
      const action = await row.locator("form").getAttribute("action");
      assert.match(action, /^\/admin\/users\/[^/]+\/suspend$/, "the suspend form's action");
      const susp = await submit(owner, row.getByRole("button", { name: "Suspend" }), action);
      assert.ok([200, 303].includes(susp.status()), `suspending: HTTP ${susp.status()}`);
      await expectText(owner.locator(`tr[data-user="${bob.username}"]`), "Suspended");

      // The frame's next request is refused, without the shell page reloading.
      const shellUrl = viewer.url();
      const reload = await frame.goto(new URL("/", frame.url()).href);
      assert.ok([403, 404].includes(reload.status()), `the frame after suspending: HTTP ${reload.status()}`);
      await expectText(frame.locator("body"), REFUSED, { what: "the frame after suspending" });
      assert.equal(viewer.url(), shellUrl, "the shell page was not reloaded");

      // The next shell navigation lands on /login; signing in again is refused.
      await viewer.locator("header nav").getByRole("link", { name: "Grains" }).click();
      await expectPath(viewer, /^\/login/);
      const stale = await cookie(viewer.context(), SESSION_COOKIE);
      const refused = await tryLogin(viewer, server, bob.username, bob.password);
      expectStatus(refused, 403, "signing in while suspended");
      await expectPath(viewer, "/login");
      await expectText(viewer.locator('form[action="/login"] [role="alert"]'), "This account is suspended", { what: "the sign-in error" });
      const after = await cookie(viewer.context(), SESSION_COOKIE);
      // The dead session's cookie was cleared on the first request after the suspension, and a
      // refused sign-in sets no new one.
      assert.ok(before?.value, "the person had a session cookie before the suspension");
      assert.equal(stale, undefined, "the suspended session's cookie is cleared");
      assert.equal(after, undefined, "a refused sign-in must not set a new session cookie");
      // Whatever cookie is left signs nobody in.
      await viewer.goto(server.url("/"));
      await expectPath(viewer, /^\/login/);
    },
  },
];

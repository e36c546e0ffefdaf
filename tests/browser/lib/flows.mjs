// What a person does in the shell, as reusable steps. Each step asserts that it worked, so a
// scenario reads as a story and fails at the step that broke.
import { assert, cookie, expectPath, expectStatus, expectText } from "./expect.mjs";

export const SESSION_COOKIE = "granary_sid";

/** The default administrator the scenarios create. */
export const ADMIN = Object.freeze({ username: "ada", displayName: "Ada Lovelace", password: "correct horse battery staple" });

/** Clicks `button` (a locator) and returns the response to the POST it submits to `path`. */
export async function submit(page, button, path) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === "POST" && new URL(r.url()).pathname === path),
    button.click(),
  ]);
  return response;
}

/** Opens a setup link (the printed one by default) and creates an administrator; ends on home. */
export async function setupAdmin(page, server, user = ADMIN, setupUrl = server.setupUrl) {
  const resp = await page.goto(setupUrl);
  expectStatus(resp, 200, "the setup page");
  await expectText(page.locator("h1"), "Create an administrator");
  const form = page.locator(`form[action^="/setup/"]`);
  await form.locator('input[name="username"]').fill(user.username);
  await form.locator('input[name="display_name"]').fill(user.displayName);
  await form.locator('input[name="password"]').fill(user.password);
  await form.locator('input[name="password2"]').fill(user.password);
  const post = await submit(page, form.getByRole("button", { name: "Create account and sign in" }), new URL(setupUrl).pathname);
  expectStatus(post, 303, "creating the administrator");
  await expectSignedInHome(page, user);
}

/** Asserts the page is home, signed in as `user` (header shows the name, session cookie set). */
export async function expectSignedInHome(page, user) {
  await expectPath(page, "/");
  await expectText(page.locator("h1"), "Your grains");
  await expectText(page.locator("header .who"), user.displayName, { what: "the header's signed-in name" });
  const sid = await cookie(page.context(), SESSION_COOKIE);
  assert.ok(sid, `signed in but there is no ${SESSION_COOKIE} cookie`);
  assert.equal(sid.httpOnly, true, `${SESSION_COOKIE} must be HttpOnly`);
  assert.equal(sid.sameSite, "Lax", `${SESSION_COOKIE} must be SameSite=Lax`);
  assert.equal(sid.path, "/", `${SESSION_COOKIE} path`);
}

/** Fills and submits the sign-in form at /login; returns the POST's response. Asserts nothing. */
export async function tryLogin(page, server, username, password) {
  if (new URL(page.url()).pathname !== "/login") {
    const resp = await page.goto(server.url("/login"));
    expectStatus(resp, 200, "the sign-in page");
  }
  const form = page.locator('form[action="/login"]');
  await form.locator('input[name="username"]').fill(username);
  await form.locator('input[name="password"]').fill(password);
  return submit(page, form.getByRole("button", { name: "Sign in" }), "/login");
}

/** Signs in and asserts it worked (lands on home with the header showing the name). */
export async function login(page, server, user = ADMIN) {
  const resp = await tryLogin(page, server, user.username, user.password);
  expectStatus(resp, 303, `signing in as ${user.username}`);
  await expectSignedInHome(page, user);
}

/** Signs in and asserts it was refused with `status` and the message `message`, staying on /login. */
export async function loginRefused(page, server, username, password, status, message) {
  const resp = await tryLogin(page, server, username, password);
  expectStatus(resp, status, `signing in as ${username}`);
  await expectPath(page, "/login");
  await expectText(page.locator('form[action="/login"] [role="alert"]'), message, { what: "the sign-in error" });
  assert.equal(await cookie(page.context(), SESSION_COOKIE), undefined, `a refused sign-in must not set ${SESSION_COOKIE}`);
  // The form keeps the username and clears the password.
  assert.equal(await page.locator('input[name="username"]').inputValue(), username, "the sign-in form keeps the username");
  assert.equal(await page.locator('input[name="password"]').inputValue(), "", "the sign-in form does not keep the password");
}

/** Clicks "Sign out" in the header; asserts it lands on /login with the session cookie gone. */
export async function logout(page) {
  const resp = await submit(page, page.locator("header").getByRole("button", { name: "Sign out" }), "/logout");
  expectStatus(resp, 303, "signing out");
  await expectPath(page, "/login");
  await expectText(page.locator("h1"), "Sign in");
  assert.equal(await cookie(page.context(), SESSION_COOKIE), undefined, `${SESSION_COOKIE} must be gone after signing out`);
}

/**
 * Uploads a .gpk through the form on /apps and returns {response, events}: the upload's HTTP
 * response, and what the progress bar and status line did (recorded with a MutationObserver,
 * since a small upload finishes before a poll could see the bar). The reply's JSON is not read
 * here: Chromium drops an XHR's body once the page navigates away, so assert on what the page
 * shows (the status line, the page it lands on) instead.
 */
export async function uploadPackage(page, server, gpkPath) {
  if (new URL(page.url()).pathname !== "/apps") {
    const resp = await page.goto(server.url("/apps"));
    expectStatus(resp, 200, "the apps page");
  }
  // The page records what its progress bar and status line showed in sessionStorage, which is
  // written synchronously and survives the navigation to the app's page that follows a
  // successful upload (an event sent to the test just before that navigation can be lost with
  // the page that sent it).
  await page.evaluate(() => {
    const bar = document.getElementById("upload-progress");
    const status = document.getElementById("upload-status");
    sessionStorage.setItem("granaryUploadEvents", "[]");
    const report = () => {
      const seen = JSON.parse(sessionStorage.getItem("granaryUploadEvents") || "[]");
      seen.push({ barVisible: !bar.hidden, value: Number(bar.value), status: status.textContent, statusClass: status.className });
      sessionStorage.setItem("granaryUploadEvents", JSON.stringify(seen));
    };
    new MutationObserver(report).observe(bar, { attributes: true });
    new MutationObserver(report).observe(status, { childList: true, characterData: true, subtree: true, attributes: true });
  });
  await page.locator("#gpk").setInputFiles(gpkPath);
  const response = await submit(page, page.getByRole("button", { name: "Upload and install" }), "/apps/upload");
  /** What the page showed during the upload; call once the page has settled. */
  const events = async () => page.evaluate(() => JSON.parse(sessionStorage.getItem("granaryUploadEvents") || "[]"));
  return { response, events };
}

/** How long the first request into a new grain may take (the supervisor starts the sandbox). */
export const GRAIN_START_TIMEOUT = 30_000;

/** A grain id in a URL: 24 characters of the app-id base32 alphabet. */
export const GRAIN_ID = /^[0-9ac-hjkmnp-z]{24}$/;

/** Installs the Echo sample app through the upload form; ends on its page. Returns its package id. */
export async function installEcho(page, server, gpkPath) {
  return installPackage(page, server, gpkPath, "Echo");
}

/** Installs a .gpk through the upload form; ends on the app's page titled `title`. Returns its package id. */
export async function installPackage(page, server, gpkPath, title) {
  const { response } = await uploadPackage(page, server, gpkPath);
  expectStatus(response, 200, `uploading ${gpkPath}`);
  await expectPath(page, /^\/apps\/[0-9a-f]{32}$/);
  await expectText(page.locator("h1"), title);
  return new URL(page.url()).pathname.slice("/apps/".length);
}

/**
 * On an app's page, types `title` into the "New grain" form of the action `button` and submits
 * it; asserts it lands on the new grain's page. Returns the grain id.
 */
export async function newGrain(page, button, title) {
  const form = page.locator("form.newgrain").filter({ has: page.getByRole("button", { name: button }) });
  await form.locator('input[name="title"]').fill(title);
  const resp = await submit(page, form.getByRole("button", { name: button }), "/grains");
  expectStatus(resp, 303, `creating a grain with "${button}"`);
  await expectPath(page, /^\/grains\/[0-9a-z]{24}$/);
  const id = new URL(page.url()).pathname.slice("/grains/".length);
  assert.match(id, GRAIN_ID, "the new grain's id");
  assert.equal(await page.locator('form.rename input[name="title"]').inputValue(), title, "the grain page's title field");
  return id;
}

/**
 * Waits until the grain page's frame has gone through its one-time init link and shows the
 * app's page (its `h1` says `app`: "Echo" unless told); returns the frame (a playwright Frame).
 */
export async function grainFrame(page, { timeout = GRAIN_START_TIMEOUT, app = "Echo" } = {}) {
  const el = page.locator("iframe#grain-frame");
  await el.waitFor();
  const frame = await (await el.elementHandle()).contentFrame();
  assert.ok(frame, "the grain page's iframe has no frame");
  await expectText(frame.locator("h1"), app, { timeout, what: `the ${app} page in the grain frame` });
  assert.equal(new URL(frame.url()).pathname, "/", `the frame ends at / after its init link, it is at ${frame.url()}`);
  return frame;
}

/** The texts of the `li`s in `list` (a locator), trimmed. */
export async function items(list) {
  return list.locator("li").evaluateAll((lis) => lis.map((li) => li.textContent.trim()));
}

/** Clicks one of the grain bar's buttons (Rename, Restart, Move to trash), returns the POST's response. */
export async function grainAction(page, grainId, button, action) {
  return submit(page, page.locator(".grainbar").getByRole("button", { name: button }), `/grains/${grainId}/${action}`);
}

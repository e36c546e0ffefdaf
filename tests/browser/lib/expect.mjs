// Waiting assertions for playwright-core (which has no `expect`): each waits for the condition,
// then fails with what the page actually shows.
import assert from "node:assert/strict";

export const TIMEOUT = 10_000;

function pathOf(page) {
  const u = new URL(page.url());
  return u.pathname + u.search;
}

/** Waits until `locator` is visible and its text contains `text` (a string or RegExp). */
export async function expectText(locator, text, { timeout = TIMEOUT, what } = {}) {
  try {
    await locator.filter({ hasText: text }).first().waitFor({ state: "visible", timeout });
  } catch {
    const page = locator.page();
    const shown = await locator.allInnerTexts().catch(() => []);
    throw new Error(
      `expected ${what || locator} to show ${JSON.stringify(String(text))} on ${pathOf(page)}; ` +
        (shown.length ? `it shows: ${JSON.stringify(shown.join(" | ").slice(0, 600))}` : "no such element is on the page") +
        `\npage text: ${JSON.stringify((await page.locator("body").innerText().catch(() => "")).slice(0, 800))}`,
    );
  }
}

/** Waits until the page's path (+ query) equals `path`, or matches it if it is a RegExp. */
export async function expectPath(page, path, { timeout = TIMEOUT } = {}) {
  const matches = (url) => (path instanceof RegExp ? path.test(url.pathname + url.search) : url.pathname + url.search === path);
  try {
    await page.waitForURL(matches, { timeout, waitUntil: "load" });
  } catch {
    throw new Error(`expected the browser at ${path}, it is at ${pathOf(page)} (page: ${JSON.stringify((await page.locator("body").innerText().catch(() => "")).slice(0, 400))})`);
  }
}

export async function expectHidden(locator, { timeout = TIMEOUT, what } = {}) {
  try {
    await locator.waitFor({ state: "hidden", timeout });
  } catch {
    throw new Error(`expected ${what || locator} to be hidden, it is visible: ${JSON.stringify(await locator.innerText().catch(() => ""))}`);
  }
}

/** The cookie `name` for the context's pages, or undefined. */
export async function cookie(context, name) {
  return (await context.cookies()).find((c) => c.name === name);
}

export function expectStatus(response, status, what) {
  assert.ok(response, `${what}: no response was seen`);
  assert.equal(response.status(), status, `${what}: expected HTTP ${status}, got ${response.status()} for ${response.request().method()} ${new URL(response.url()).pathname}`);
}

export { assert };

// The grain frame's postMessage calls besides the powerbox (SPEC.md "The shell's side:
// postMessage API and the dialog"): setTitle, startSharing and showConnectionGraph, sent by the
// app in a real Echo grain on its own session origin, and the same messages from anything but
// that frame ignored.
import { assert, expectPath, expectText } from "../lib/expect.mjs";
import { grainFrame, installEcho, newGrain, setupAdmin } from "../lib/flows.mjs";
import { GRAIN_HOST, echoPackage } from "../lib/server.mjs";

const TIMEOUT = 90_000;

/** A server, the administrator on `page` with an open Echo grain titled `title`. */
async function openGrain(t, title) {
  const server = await t.startServer({ host: GRAIN_HOST });
  const page = await t.newPage();
  await setupAdmin(page, server);
  await installEcho(page, server, echoPackage());
  const grainId = await newGrain(page, "New echo", title);
  const frame = await grainFrame(page);
  return { server, page, grainId, frame };
}

/** Posts `msg` to the shell from the app's own page in the grain frame. */
const fromApp = (frame, msg) => frame.evaluate((m) => window.parent.postMessage(m, "*"), msg);

/** Waits until the shell page has received `n` messages in total (a listener the test added). */
async function received(page, n) {
  await page.waitForFunction((k) => window.__seen >= k, n, { polling: 50 });
}

export const scenarios = [
  {
    name: "frame messages: setTitle from the grain frame names the tab; the same from elsewhere is ignored",
    timeout: TIMEOUT,
    async run(t) {
      const { page, frame } = await openGrain(t, "Lab notebook");
      const before = await page.title();
      assert.match(before, /Lab notebook/, "the tab's title names the grain");
      await page.evaluate(() => {
        window.__seen = 0;
        addEventListener("message", () => window.__seen++);
      });

      // Forged first: the shell page itself, and a frame nested in the grain frame (the grain's
      // own origin, but not the grain frame's window). Both arrive, neither changes the title.
      await page.evaluate(() => window.postMessage({ setTitle: "forged by the shell page" }, "*"));
      await frame.evaluate(() => { const f = document.createElement("iframe"); f.id = "nested"; document.body.append(f); });
      const nested = await (await frame.locator("iframe#nested").elementHandle()).contentFrame();
      await nested.evaluate(() => window.top.postMessage({ setTitle: "forged by a nested frame" }, "*"));
      await received(page, 2);
      assert.equal(await page.title(), before, "forged setTitle messages leave the title alone");

      // The app's own page: the tab shows its title, then the grain's.
      await fromApp(frame, { setTitle: "Chapter 2 — draft" });
      await page.waitForFunction(() => document.title.startsWith("Chapter 2 — draft"), null, { polling: 50 });
      const title = await page.title();
      assert.equal(title, "Chapter 2 — draft · Lab notebook", "the tab's title after setTitle");
      // Very long titles are cut, not refused.
      await fromApp(frame, { setTitle: "x".repeat(5000) });
      await page.waitForFunction(() => document.title.startsWith("xxx"), null, { polling: 50 });
      assert.equal((await page.title()).split(" · ")[0].length, 200, "setTitle keeps at most 200 characters");
      // Not a string: ignored.
      await fromApp(frame, { setTitle: { toString: null } });
      await received(page, 5);
      assert.ok((await page.title()).startsWith("xxx"), "a setTitle that is not a string is ignored");
    },
  },
  {
    name: "frame messages: startSharing opens the grain's sharing page, showConnectionGraph its reach page",
    timeout: TIMEOUT,
    async run(t) {
      const { page, grainId, frame } = await openGrain(t, "Shared board");

      // Forged by the shell page: nothing happens.
      await page.evaluate(() => {
        window.__seen = 0;
        addEventListener("message", () => window.__seen++);
        window.postMessage({ startSharing: { rpcId: 1 } }, "*");
        window.postMessage({ showConnectionGraph: { rpcId: 2 } }, "*");
      });
      await received(page, 2);
      await expectPath(page, `/grains/${grainId}`);

      await fromApp(frame, { startSharing: { rpcId: 3 } });
      await expectPath(page, `/grains/${grainId}/access`);
      await expectText(page.locator("h1"), "Shared board", { what: "the sharing page's heading" });

      // Back to the grain: its page opens a new session, and its frame shows the app (not the
      // previous session's origin, which the new page's frame-src would block).
      await page.goBack();
      await expectPath(page, `/grains/${grainId}`);
      const again = await grainFrame(page);
      await fromApp(again, { showConnectionGraph: { rpcId: 4 } });
      await expectPath(page, `/grains/${grainId}/reach`);
      await expectText(page.locator("main"), "What", { what: "the reach page" });
      await t.screenshot(page, "45-show-connection-graph");

      // Back, then a reload: each time a working frame, not the previous session's address.
      await page.goBack();
      await grainFrame(page);
      await page.reload();
      await expectPath(page, `/grains/${grainId}`);
      await grainFrame(page);
    },
  },
];

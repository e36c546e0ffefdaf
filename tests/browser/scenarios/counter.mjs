// A raw Cap'n Proto interface through the powerbox (SPEC.md "Raw interfaces"): two grains of the
// Counter sample app in real sandboxes. Grain "Garage" asks by postMessage for sample.capnp's
// Counter (a descriptor naming its type id), the shell's dialog offers grain "Kitchen", the pick
// is claimed by Garage's server and used over the bridge's local Cap'n Proto endpoint; what
// Garage adds shows on Kitchen's page; revoking the grant on the reach page ends it.
import { assert, expectHidden, expectStatus, expectText } from "../lib/expect.mjs";
import { grainFrame, installPackage, newGrain, setupAdmin, submit } from "../lib/flows.mjs";
import { counterPackage } from "../lib/server.mjs";

const TIMEOUT = 120_000;

/** A new Counter grain titled `title`; returns {id, frame} once its page shows. */
async function counterGrain(page, server, appId, title) {
  expectStatus(await page.goto(server.url(`/apps/${appId}`)), 200, "the app's page");
  const id = await newGrain(page, "New counter", title);
  const frame = await grainFrame(page, { app: "Tally" });
  await expectText(frame.locator("#total"), "0", { what: `${title}'s total` });
  return { id, frame };
}

export const scenarios = [
  {
    name: "counter: a grain uses another grain's Counter by type id through the dialog, until the grant is revoked",
    timeout: TIMEOUT,
    async run(t) {
      const server = await t.startServer();
      const admin = await t.newPage();
      await setupAdmin(admin, server);
      const appId = await installPackage(admin, server, counterPackage(), "Counter");

      // Kitchen counts to 2 on its own page.
      const kitchen = await counterGrain(admin, server, appId, "Kitchen");
      await kitchen.frame.locator("#add").click();
      await expectText(kitchen.frame.locator("#total"), "1", { what: "Kitchen's total after Add 1" });
      await kitchen.frame.locator("#add").click();
      await expectText(kitchen.frame.locator("#total"), "2", { what: "Kitchen's total after Add 1 twice" });

      // Garage asks for a Counter; the dialog offers Kitchen (not Garage itself).
      const garage = await counterGrain(admin, server, appId, "Garage");
      await garage.frame.locator("#connect").click();
      const dialog = admin.locator("dialog#powerbox[open]");
      await expectText(dialog.locator("#powerbox-asked"), "It asks for a “Counter”, which Counter grains provide.", { what: "what the dialog says is asked, in the words of the app that provides it" });
      const options = dialog.locator("#powerbox-options button.pb-option");
      await expectText(options, "Kitchen", { what: "the Kitchen option" });
      assert.equal(await options.count(), 1, "only Kitchen is offered");
      await t.screenshot(admin, "50-counter-dialog");
      const [resp] = await Promise.all([
        admin.waitForResponse((r) => r.request().method() === "POST" && /\/powerbox\/pick$/.test(new URL(r.url()).pathname)),
        options.click(),
      ]);
      expectStatus(resp, 200, "picking Kitchen");
      await expectHidden(admin.locator("dialog#powerbox"), { what: "the powerbox dialog" });
      await expectText(garage.frame.locator('#remote-status[data-connected="true"]'), "Connected to “Tally”", { what: "Garage's connection" });
      await expectText(garage.frame.locator("#remote-total"), "2", { what: "Kitchen's total as Garage sees it" });

      // Garage adds to Kitchen's counter; Kitchen's page shows it, Garage's own total stays 0.
      await garage.frame.locator("#remote-add").click();
      await expectText(garage.frame.locator("#remote-total"), "3", { what: "Kitchen's total after Garage's Add 1 there" });
      assert.equal((await garage.frame.locator("#total").innerText()).trim(), "0", "Garage's own tally");
      await t.screenshot(admin, "51-counter-connected");
      expectStatus(await admin.goto(server.url(`/grains/${kitchen.id}`)), 200, "Kitchen's grain page");
      const kitchenAgain = await grainFrame(admin, { app: "Tally" });
      await expectText(kitchenAgain.locator("#total"), "3", { what: "Kitchen's own page after Garage added" });

      // Revoked on Garage's reach page: Garage's next call says so.
      expectStatus(await admin.goto(server.url(`/grains/${garage.id}/reach`)), 200, "Garage's reach page");
      const row = admin.locator("#reach-held tr[data-grant]");
      await expectText(row, "may use Counter in “Kitchen”", { what: "the grant on the reach page" });
      const grantId = await row.getAttribute("data-grant");
      admin.once("dialog", (d) => d.accept());
      expectStatus(await submit(admin, row.getByRole("button", { name: "Revoke" }), `/grants/${grantId}/revoke`), 303, "revoking the grant");
      expectStatus(await admin.goto(server.url(`/grains/${garage.id}`)), 200, "Garage's grain page");
      const garageAgain = await grainFrame(admin, { app: "Tally" });
      await expectText(garageAgain.locator('#remote-status[data-connected="false"]'), "revoked", { what: "Garage's connection after the revocation" });
      assert.equal(await garageAgain.locator("#remote-total").innerText(), "", "no total shown for a revoked counter");
    },
  },
];

// The shell's side of the grain frame's postMessage API (SPEC.md, "The shell's side:
// postMessage API and the dialog"). Messages are accepted only from this page's grain frame
// and only from its session origin; answers go back to that origin only.
"use strict";
(() => {
  const frame = document.getElementById("grain-frame");
  const dialog = document.getElementById("powerbox");
  if (!frame || !dialog) return;
  const grain = dialog.dataset.grain;
  const csrf = dialog.dataset.csrf;
  const frameUrl = new URL(frame.src);
  const frameOrigin = frameUrl.origin;
  const session = frameUrl.hostname.split(".")[0];
  let pending = null; // the rpcId of the open request, answered exactly once
  let chooser = null; // {id, timer} while a provider's chooser page is shown in the dialog

  const reply = (msg) => frame.contentWindow.postMessage(msg, frameOrigin);

  async function post(path, fields) {
    const body = new URLSearchParams({ csrf, session, ...fields });
    const r = await fetch(path, { method: "POST", body, credentials: "same-origin" });
    let j = null;
    try { j = await r.json(); } catch (_) { /* not JSON */ }
    if (!r.ok || !j) throw new Error((j && j.error) || `The server answered ${r.status}. Reload the page and try again.`);
    return j;
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }

  // Stops polling the chooser; `cancel` also tells the server, which ends its session.
  function endChooser(cancel) {
    if (!chooser) return;
    const c = chooser;
    chooser = null;
    clearTimeout(c.timer);
    dialog.classList.remove("pb-wide");
    if (cancel) post(`/grains/${grain}/powerbox/chooser/${c.id}/cancel`, {}).catch(() => {});
  }

  function finish(answer) {
    endChooser(true);
    dialog.classList.remove("pb-wide");
    if (pending !== null) reply({ rpcId: pending, ...answer });
    pending = null;
    if (dialog.open) dialog.close();
  }

  function show(...children) {
    dialog.replaceChildren(...children);
    if (!dialog.open) dialog.showModal();
  }

  const cancelButton = () => el("button", { type: "button", class: "secondary", id: "powerbox-cancel", onclick: () => finish({ canceled: true }) }, "Cancel");

  async function request(req) {
    if (pending !== null) finish({ canceled: true });
    pending = req.rpcId === undefined ? null : req.rpcId;
    const query = JSON.stringify(Array.isArray(req.query) ? req.query.map(String) : []);
    const label = typeof req.saveLabel === "string" ? req.saveLabel.slice(0, 200) : "";
    show(el("h2", {}, "Grant access"), el("p", { class: "muted" }, "Looking for what can answer this request…"), el("div", { class: "actions" }, cancelButton()));
    let found;
    try {
      found = await post(`/grains/${grain}/powerbox/options`, { query });
    } catch (e) {
      show(el("h2", {}, "Grant access"), el("div", { class: "error", role: "alert" }, e.message), el("div", { class: "actions" }, cancelButton()));
      return;
    }
    const heading = el("h2", {}, "This grain asks for access");
    const asked = el("p", { id: "powerbox-asked" }, found.asked);
    if (!found.options.length) {
      show(heading, asked, el("div", { class: "card empty", id: "powerbox-empty" },
        el("p", {}, "Nothing on this server can provide that."),
        el("p", { class: "muted" }, found.hint || "An administrator can install an app that provides it.")),
        el("div", { class: "actions" }, cancelButton()));
      return;
    }
    const status = el("div", { role: "status" });
    const list = el("ul", { class: "pb-options", id: "powerbox-options" });
    for (const o of found.options) {
      const button = el("button", { type: "button", class: "pb-option", "data-option": o.id }, el("strong", {}, o.title), el("span", { class: "muted" }, ` ${o.verbPhrase}`));
      if (o.description) button.append(el("small", { class: "muted" }, o.description));
      button.addEventListener("click", async () => {
        for (const b of list.querySelectorAll("button")) b.disabled = true;
        status.replaceChildren(el("p", { class: "muted" }, o.chooser ? "Opening…" : "Granting…"));
        try {
          if (o.chooser) {
            await openChooser(o, query, label);
            return;
          }
          const r = await post(`/grains/${grain}/powerbox/pick`, { option: o.id, query, label });
          finish({ token: r.token, descriptor: r.descriptor });
        } catch (e) {
          status.replaceChildren(el("div", { class: "error", role: "alert" }, e.message));
          for (const b of list.querySelectorAll("button")) b.disabled = false;
        }
      });
      list.append(el("li", {}, button));
    }
    show(heading, asked, el("p", { class: "muted" }, "Choose what to give it. You can revoke this later on the grain's “What can this reach” page."), list, status, el("div", { class: "actions" }, cancelButton()));
  }

  // The provider's own page, framed in the dialog, where the person chooses what to grant;
  // its app ends the choice with fulfillRequest, which the dialog learns by polling.
  async function openChooser(o, query, label) {
    const r = await post(`/grains/${grain}/powerbox/chooser`, { option: o.id, query, label });
    const id = r.chooser;
    const frameEl = el("iframe", { id: "powerbox-chooser", class: "pb-chooser", src: r.url, title: `Choose in ${o.title}` });
    const status = el("div", { role: "status" });
    dialog.classList.add("pb-wide");
    show(el("h2", {}, `Choose in “${o.title}”`), el("p", { class: "muted" }, "Choose what to give in the grain's own page below; nothing is granted until you do."),
      frameEl, status, el("div", { class: "actions" }, cancelButton()));
    chooser = { id, timer: null };
    const tick = async () => {
      if (!chooser || chooser.id !== id) return;
      let state;
      try {
        state = await post(`/grains/${grain}/powerbox/chooser/${id}`, {});
      } catch (e) {
        if (!chooser || chooser.id !== id) return;
        chooser = null;
        status.replaceChildren(el("div", { class: "error", role: "alert" }, e.message));
        return;
      }
      if (!chooser || chooser.id !== id) return;
      if (state.state === "done") {
        chooser = null; // the server ended it with this answer
        finish({ token: state.token, descriptor: state.descriptor });
        return;
      }
      chooser.timer = setTimeout(tick, 250);
    };
    chooser.timer = setTimeout(tick, 250);
  }

  // Mints a grain API token and shows the app's template with it filled in, here on the
  // shell's page: the app never sees the token.
  async function renderTemplate(req) {
    if (pending !== null) finish({ canceled: true });
    const rpcId = req.rpcId;
    const fields = { template: String(req.template || ""), petname: String(req.petname || "") };
    if (req.roleAssignment && Number.isInteger(req.roleAssignment.roleId)) fields.role = String(req.roleAssignment.roleId);
    const close = el("button", { type: "button", id: "powerbox-close", onclick: () => dialog.close() }, "Done");
    try {
      const r = await post(`/grains/${grain}/powerbox/template`, fields);
      const text = el("textarea", { id: "powerbox-template", readonly: "", rows: "6", "aria-label": "Connection details" });
      text.value = r.text;
      const copy = el("button", { type: "button", class: "secondary", onclick: () => { text.select(); navigator.clipboard && navigator.clipboard.writeText(r.text); } }, "Copy");
      show(el("h2", {}, r.petname), el("p", { class: "muted" }, "This contains a new API token for this grain. Keep it secret: anyone who has it can use the grain as you. Revoke it on “What can this reach”."), text, el("div", { class: "actions" }, copy, close));
      reply({ rpcId, shown: true });
    } catch (e) {
      show(el("h2", {}, "API access"), el("div", { class: "error", role: "alert" }, e.message), el("div", { class: "actions" }, close));
      reply({ rpcId, error: e.message });
    }
  }

  // Offers (SessionContext.offer): the app offered the person an API key for this grain. The
  // page asks every 2 s while visible and shows one when no other dialog is open; the key is
  // made only if the person accepts, and the app never sees it.
  async function showOffer(o) {
    const answer = async (what) => {
      const r = await fetch(`/grains/${grain}/powerbox/offer/${o.id}/${what}`, { method: "POST", body: new URLSearchParams({ csrf, session }), credentials: "same-origin" });
      let j = null;
      try { j = await r.json(); } catch (_) { /* not JSON */ }
      if (!r.ok || !j) throw new Error((j && j.error) || `The server answered ${r.status}.`);
      return j;
    };
    const close = (label) => el("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, label);
    const decline = el("button", { type: "button", class: "secondary", id: "powerbox-offer-decline", onclick: () => { answer("decline").catch(() => {}); dialog.close(); } }, "No thanks");
    const accept = el("button", { type: "button", id: "powerbox-offer-accept" }, "Create the key");
    accept.addEventListener("click", async () => {
      accept.disabled = true;
      try {
        const r = await answer("accept");
        const field = (id, label, value) => { const i = el("input", { id, readonly: "", "aria-label": label }); i.value = value; return el("label", {}, label, i); };
        const copy = el("button", { type: "button", class: "secondary", onclick: () => navigator.clipboard && navigator.clipboard.writeText(r.token) }, "Copy the key");
        show(el("h2", {}, r.petname), el("p", { class: "muted" }, "Keep this key secret: anyone who has it can use this grain as you. Revoke it on “What can this reach”."),
          field("powerbox-offer-host", "Address", r.host), field("powerbox-offer-token", "Key", r.token), el("div", { class: "actions" }, copy, close("Done")));
      } catch (e) {
        show(el("h2", {}, "API key"), el("div", { class: "error", role: "alert" }, e.message), el("div", { class: "actions" }, close("Close")));
      }
    });
    const what = [o.title || "An API key", o.verbPhrase].filter(Boolean).join(": ");
    show(el("h2", {}, "This grain offers you an API key"), el("p", { id: "powerbox-offer-title" }, what),
      ...(o.description ? [el("p", { class: "muted" }, o.description)] : []),
      el("p", { class: "muted" }, "The key would let a program outside Granary use this grain's API as you, with at most your permissions."),
      el("div", { class: "actions" }, decline, accept));
  }

  async function watchOffers() {
    for (;;) {
      await new Promise((r) => setTimeout(r, 2000));
      if (document.visibilityState !== "visible" || dialog.open) continue;
      let r;
      try {
        r = await fetch(`/grains/${grain}/powerbox/offers`, { method: "POST", body: new URLSearchParams({ csrf, session }), credentials: "same-origin" });
      } catch (_) { continue; }
      if (r.status === 404 || r.status === 403) return; // the session ended: reloading starts anew
      const j = r.ok ? await r.json().catch(() => null) : null;
      if (j && j.offer && !dialog.open) showOffer(j.offer);
    }
  }
  watchOffers();

  dialog.addEventListener("cancel", (e) => { e.preventDefault(); finish({ canceled: true }); });

  window.addEventListener("message", (event) => {
    if (event.source !== frame.contentWindow || event.origin !== frameOrigin) return;
    const m = event.data;
    if (!m || typeof m !== "object") return;
    if (m.powerboxRequest && typeof m.powerboxRequest === "object") {
      request(m.powerboxRequest);
    } else if (typeof m.setPath === "string" && m.setPath.startsWith("/") && !m.setPath.startsWith("//")) {
      // Reopening this URL opens the grain at that path (the server checks it again).
      const url = new URL(location.href);
      url.search = m.setPath.length > 1 ? new URLSearchParams({ path: m.setPath.slice(0, 2048) }).toString() : "";
      url.hash = "";
      history.replaceState(null, "", url);
    } else if (typeof m.setTitle === "string") {
      document.title = `${m.setTitle.slice(0, 200)} · ${dialog.dataset.title}`;
    } else if (m.startSharing) {
      location.assign(`/grains/${grain}/access`);
    } else if (m.showConnectionGraph) {
      location.assign(`/grains/${grain}/reach`);
    } else if (m.renderTemplate && typeof m.renderTemplate === "object") {
      renderTemplate(m.renderTemplate);
    }
  });
})();

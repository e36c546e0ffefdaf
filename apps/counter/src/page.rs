//! The counter's page: its total with "Add 1", and another grain's counter reached through
//! the powerbox. Element ids are stable (the browser tests use them): `total`, `name`, `add`,
//! `connect`, `remote-status`, `remote-total`, `remote-add`, `outside`.

pub const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Counter</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; max-width: 40rem; }
.total { font-size: 3rem; margin: .5rem 0; }
button { font-size: 1rem; padding: .4rem .9rem; margin-right: .5rem; }
.status { color: #555; }
.error { color: #a00; }
section { border-top: 1px solid #ddd; margin-top: 1.5rem; padding-top: 1rem; }
</style></head>
<body>
<p id="outside" class="error"></p>
<h1><span id="name">Tally</span></h1>
<div class="total" id="total">…</div>
<button id="add">Add 1</button>
<section>
<h2>Another counter</h2>
<p class="status" id="remote-status">Not connected.</p>
<div class="total" id="remote-total"></div>
<button id="connect">Connect to another counter</button>
<button id="remote-add" disabled>Add 1 there</button>
</section>
<script>
"use strict";
/*SHELL_RPC*/

async function api(method, url, body) {
  try {
    const r = await fetch(url, { method, headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body) });
    const j = await r.json().catch(() => ({ error: "HTTP " + r.status }));
    return r.ok ? j : { ok: false, error: j.error || ("HTTP " + r.status) };
  } catch (e) {
    return { ok: false, error: e.message };
  }
}

function showRemote(r) {
  const status = $("remote-status");
  if (r.ok) {
    if (r.name !== undefined) status.textContent = "Connected to “" + r.name + "”.";
    status.className = "status";
    status.dataset.connected = "true";
    $("remote-total").textContent = String(r.total);
    $("remote-add").disabled = false;
  } else {
    status.textContent = r.error;
    status.className = "status error";
    status.dataset.connected = "false";
  }
}

async function refresh() {
  const s = await api("GET", "/state");
  if (s.total !== undefined) {
    $("total").textContent = String(s.total);
    $("name").textContent = s.name;
  }
  return s;
}

$("add").addEventListener("click", async () => {
  const r = await api("POST", "/add");
  if (r.total !== undefined) $("total").textContent = String(r.total); else $("outside").textContent = r.error;
});

$("connect").addEventListener("click", async () => {
  const d = await api("GET", "/descriptor");
  let reply;
  try { reply = await powerboxRequest(d.descriptor, "Another counter"); } catch (e) { showRemote({ ok: false, error: "Cannot connect: " + e.message + "." }); return; }
  if (reply.canceled) { showRemote({ ok: false, error: "You closed the powerbox without choosing." }); return; }
  if (!reply.token) { showRemote({ ok: false, error: "The powerbox answered without a claim token." }); return; }
  showRemote(await api("POST", "/connect", { claimToken: reply.token }));
});

$("remote-add").addEventListener("click", async () => showRemote(await api("POST", "/remote/add", { amount: 1 })));

(async () => {
  const s = await refresh();
  if (s.remote) showRemote(await api("GET", "/remote"));
  setInterval(refresh, 1000);
})();
</script>
</body></html>
"#;

//! The dashboard's page: three sections (a Notes grain, an HTTP API, mail), each with a
//! Connect button that runs the powerbox flow, a status, Call / Call-repeatedly / Forget, and
//! the latest result. Inline CSS and script only. Stable ids for browser tests: see README.md.

pub const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Dashboard</title><link rel="icon" href="data:,">
<style>
:root{--ink:#1f2933;--muted:#637381;--line:#dfe5ec;--accent:#3b5bdb;--bg:#f5f7fb;--bad:#b3261e;--good:#1d7a46}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--ink);background:var(--bg)}
main{max-width:820px;margin:0 auto;padding:24px 20px 48px}
h1{margin:0 0 4px;font-size:28px;color:var(--accent)}
h2{font-size:17px;margin:0 0 6px}
.sub,.hint{color:var(--muted)}.hint{font-size:13px;margin:4px 0}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:14px 18px;margin-top:16px}
.row{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:8px 0}
input,textarea{padding:7px 10px;border:1px solid var(--line);border-radius:6px;font:inherit}
input{flex:1;min-width:180px}textarea{width:100%;min-height:70px}
button{padding:7px 14px;border:0;border-radius:6px;background:var(--accent);color:#fff;font:inherit;cursor:pointer}
button.quiet{background:#e8ecf4;color:var(--ink)}
button[aria-pressed=true]{background:#c2410c}
button:disabled{opacity:.5;cursor:default}
.status{font-size:14px}.status[data-connected=true]{color:var(--good)}
.message{font-size:14px;color:var(--bad);margin:4px 0}.message:empty{display:none}
pre{background:#f2f4f8;border-radius:6px;padding:8px 10px;margin:8px 0 0;white-space:pre-wrap;word-break:break-word;font:13px ui-monospace,Menlo,monospace;max-height:240px;overflow:auto}
pre:empty{display:none}pre[data-ok=false]{background:#fdecea;color:var(--bad)}
</style></head>
<body><main>
<h1>Dashboard</h1>
<p class="sub">Connects to other things only through capabilities you grant it in Granary's powerbox.</p>
<p id="outside" class="message"></p>

<section id="notes">
<h2>A Notes grain</h2>
<p class="hint">Asks for a grain that provides the <code>notes</code> API, then reads its notes.</p>
<p id="status-notes" class="status">Loading…</p>
<div class="row"><button id="connect-notes">Connect a notes grain</button>
<button id="call-notes" class="quiet">Call</button><button id="loop-notes" class="quiet" aria-pressed="false">Call every 200 ms</button>
<button id="forget-notes" class="quiet">Forget</button></div>
<p id="message-notes" class="message"></p><pre id="result-notes"></pre>
</section>

<section id="http">
<h2>An HTTP API</h2>
<p class="hint">Asks for requests to one outside origin. The platform sends them; this grain has no network.</p>
<div class="row"><input id="http-origin" placeholder="http://api.example:8080" autocomplete="off"><button id="connect-http">Connect an HTTP API</button></div>
<p id="status-http" class="status">Loading…</p>
<div class="row"><input id="http-path" placeholder="/ (path to request)" autocomplete="off">
<button id="call-http" class="quiet">Call</button><button id="loop-http" class="quiet" aria-pressed="false">Call every 200 ms</button>
<button id="forget-http" class="quiet">Forget</button></div>
<p id="message-http" class="message"></p><pre id="result-http"></pre>
</section>

<section id="mail">
<h2>Send a test mail</h2>
<p class="hint">Asks for the right to send mail as an address you may grant; the platform sets the sender.</p>
<p id="status-mail" class="status">Loading…</p>
<div class="row"><button id="connect-mail">Connect a mail sender</button><button id="forget-mail" class="quiet">Forget</button></div>
<div class="row"><input id="mail-to" type="email" placeholder="To: someone@example.org"><input id="mail-subject" placeholder="Subject" value="A test from the dashboard"></div>
<textarea id="mail-body" placeholder="Message">Hello from a Granary grain.</textarea>
<div class="row"><button id="send-mail">Send</button><button id="call-mail" class="quiet">Send again</button>
<button id="loop-mail" class="quiet" aria-pressed="false">Send every 2 s</button></div>
<p id="message-mail" class="message"></p><pre id="result-mail"></pre>
</section>

<section id="programs">
<h2>A program outside Granary</h2>
<p class="hint">Asks Granary to show you an API token for this dashboard's state, for a script of yours. Granary shows it; this page never sees it.</p>
<div class="row"><button id="api-token">Get an API token</button><button id="offer-key" class="quiet">Have Granary offer me a key</button></div>
<p id="api-token-status" class="status"></p>
</section>
</main>
<script>
"use strict";
/*SHELL_RPC*/
const KINDS = ["notes", "http", "mail"];
const PERIOD = { notes: 200, http: 200, mail: 2000 }; // mail: the platform allows 30 a minute
const looping = {};

async function apiToken() {
  const status = $("api-token-status");
  status.textContent = "Asking Granary…";
  try {
    const r = await askShell({ renderTemplate: { petname: "Dashboard state for a script",
      template: "curl -H 'Authorization: Bearer $API_TOKEN' $API_HOST/state" } });
    status.textContent = r.shown ? "Granary showed you the token and how to use it." : "Granary said: " + (r.error || "no answer");
    status.dataset.connected = r.shown ? "true" : "false";
  } catch (e) {
    status.textContent = "Cannot ask: " + e.message + ".";
  }
}

// fetch + JSON; a failure becomes {error} with a readable text.
async function api(method, url, body) {
  let r;
  try {
    r = await fetch(url, { method, headers: body === undefined ? {} : { "Content-Type": "application/json" },
                           body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    return { error: "could not reach the dashboard's server: " + e.message };
  }
  let j;
  try { j = await r.json(); } catch (e) { return { error: `the dashboard's server answered ${r.status} without JSON` }; }
  if (!r.ok && !j.error) j.error = `the dashboard's server answered ${r.status}`;
  return j;
}

function say(kind, text) { $("message-" + kind).textContent = text || ""; }

async function refresh() {
  const s = await api("GET", "/state");
  for (const kind of KINDS) {
    const el = $("status-" + kind);
    if (s.error) { el.textContent = "Unknown: " + s.error; el.dataset.connected = "false"; continue; }
    const c = s.connections[kind];
    el.dataset.connected = c ? "true" : "false";
    el.textContent = c ? `Connected: ${c.label}${c.origin ? " (" + c.origin + ")" : ""}, since ${c.connected}, token ${c.token}` : "Not connected";
  }
}

async function connect(kind) {
  say(kind, "");
  let q = "/descriptor?kind=" + kind;
  let origin;
  if (kind === "http") {
    origin = $("http-origin").value.trim();
    if (!origin) { say(kind, "Type the origin first, such as http://api.example:8080."); return; }
    q += "&origin=" + encodeURIComponent(origin);
  }
  const d = await api("GET", q);
  if (d.error) { say(kind, d.error); return; }
  let reply;
  try { reply = await powerboxRequest(d.descriptor, d.label); } catch (e) { say(kind, "Cannot connect: " + e.message + "."); return; }
  if (reply.canceled) { say(kind, "Canceled: nothing was connected."); return; }
  if (reply.error) { say(kind, "The powerbox said: " + reply.error); return; }
  if (!reply.token) { say(kind, "The powerbox answered without a claim token."); return; }
  const r = await api("POST", "/connect", { claimToken: reply.token, kind, origin });
  if (r.error) { say(kind, r.error); } else if (r.warning) { say(kind, r.warning); }
  await refresh();
}

function show(kind, r) {
  const el = $("result-" + kind);
  el.dataset.ok = r.ok ? "true" : "false";
  el.dataset.status = r.status == null ? "" : String(r.status);
  const head = r.ok ? `${r.status} OK` : `Error${r.status != null ? " (" + r.status + ")" : ""}: ${r.error}`;
  el.textContent = head + (r.body ? "\n" + r.body : "");
  el.dataset.time = new Date().toISOString();
}

function callBody(kind) {
  if (kind === "http") return { path: $("http-path").value.trim() };
  if (kind === "mail") return { to: $("mail-to").value, subject: $("mail-subject").value, body: $("mail-body").value };
  return {};
}

async function call(kind) {
  const r = await api("POST", "/call/" + kind, callBody(kind));
  show(kind, r.ok === undefined ? { ok: false, status: null, error: r.error } : r);
}

async function toggleLoop(kind) {
  const button = $("loop-" + kind);
  if (looping[kind]) { looping[kind] = false; return; }
  looping[kind] = true;
  const label = button.textContent;
  button.setAttribute("aria-pressed", "true");
  button.textContent = "Stop";
  while (looping[kind]) {
    await call(kind);
    await new Promise((r) => setTimeout(r, PERIOD[kind]));
  }
  button.setAttribute("aria-pressed", "false");
  button.textContent = label;
}

async function forget(kind) {
  looping[kind] = false;
  const r = await api("DELETE", "/connections/" + kind);
  say(kind, r.error || r.warning || "Forgotten: the grant was dropped.");
  await refresh();
}

for (const kind of KINDS) {
  $("connect-" + kind).addEventListener("click", () => connect(kind));
  $("call-" + kind).addEventListener("click", () => call(kind));
  $("loop-" + kind).addEventListener("click", () => toggleLoop(kind));
  $("forget-" + kind).addEventListener("click", () => forget(kind));
}
$("send-mail").addEventListener("click", () => call("mail"));
$("api-token").addEventListener("click", apiToken);
// The server side asks (SessionContext.offer); Granary shows the offer in its own dialog.
$("offer-key").addEventListener("click", async () => {
  const r = await api("POST", "/offer-key");
  $("api-token-status").textContent = r.error ? "Granary said: " + r.error : "Granary will show you the offer.";
});
refresh();
</script>
</body></html>
"##;

// Asking Granary's shell (the grain frame's parent) with postMessage, replies matched by
// rpcId (SPEC.md, "The shell's side: postMessage API and the dialog"). From granary-app-kit
// (`SHELL_RPC_JS`); the page needs an element with id `outside` for the warning shown when
// it is opened outside Granary.
const $ = (id) => document.getElementById(id);
const pending = new Map();
let nextRpcId = 1;

if (window.parent === window) {
  $("outside").textContent = "This page is not inside Granary's grain view, so there is no powerbox to ask. Open the grain from Granary.";
}

// Replies from the shell: only from the frame's parent, matched by rpcId.
window.addEventListener("message", (event) => {
  if (event.source !== window.parent) return;
  const m = event.data;
  if (!m || typeof m !== "object" || !pending.has(m.rpcId)) return;
  const resolve = pending.get(m.rpcId);
  pending.delete(m.rpcId);
  resolve(m);
});

// Sends `{name: {...fields}}` to the shell with a fresh rpcId; resolves with its reply.
function askShell(message) {
  if (window.parent === window) {
    return Promise.reject(new Error("not inside Granary: there is no shell to ask"));
  }
  const rpcId = nextRpcId++;
  const [name] = Object.keys(message);
  return new Promise((resolve) => {
    pending.set(rpcId, resolve);
    window.parent.postMessage({ [name]: { rpcId, ...message[name] } }, "*");
  });
}

// Opens the powerbox for one descriptor; resolves with the shell's reply (a claim token, or
// why there is none).
function powerboxRequest(descriptor, saveLabel) {
  return askShell({ powerboxRequest: { query: [descriptor], saveLabel } });
}

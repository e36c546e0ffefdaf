// A real `granary serve` on a free loopback port with its own temporary data directory, plus
// the CLI commands that talk to it (admin-token, status) and package building (keygen, pack).
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { randomBytes } from "node:crypto";

/** The granary binary: GRANARY_BIN (the Rust test sets it to the freshly built one). */
export function granaryBin() {
  const bin = process.env.GRANARY_BIN;
  if (!bin) throw new Error("GRANARY_BIN is not set: run the suite with `cargo test -p granary-tests --test browser`, or set it to a built `granary`");
  return bin;
}

function granary(args, opts = {}) {
  try {
    return execFileSync(granaryBin(), args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], ...opts });
  } catch (e) {
    throw new Error(`granary ${args.join(" ")} failed (${e.status}): ${e.stderr || e.message}`);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts a server and waits for its one-time setup link. The base URL uses `localhost` (grain
 * origins will be `<id>.localhost:PORT`), so browse to `server.url(path)` exactly.
 */
export async function startServer({ timeoutMs = 20_000 } = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), "granary-browser-"));
  const port = await freePort();
  const baseUrl = `http://localhost:${port}`;
  const child = spawn(granaryBin(), ["serve", "--data-dir", dataDir, "--listen", `127.0.0.1:${port}`, "--base-url", baseUrl], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, GRANARY_LOG: process.env.GRANARY_LOG || "warn" },
  });
  const log = [];
  let exited = null;
  child.on("exit", (code, signal) => { exited = { code, signal }; });
  const setupUrl = await new Promise((resolve, reject) => {
    let buf = "";
    let found = null;
    const timer = setTimeout(() => reject(new Error(`granary serve printed no setup link within ${timeoutMs} ms; its output:\n${log.join("\n")}`)), timeoutMs);
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        log.push(line);
        if (log.length > 200) log.shift();
        const t = line.trim();
        if (t.startsWith(`${baseUrl}/setup/`)) found = t;
        if (line.includes("admin-token` prints a new link")) {
          clearTimeout(timer);
          found ? resolve(found) : reject(new Error(`granary serve printed no setup link; its output:\n${log.join("\n")}`));
        }
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`granary serve exited (${code ?? signal}) before printing a setup link; its output:\n${log.join("\n")}`));
    });
  });
  return {
    baseUrl,
    port,
    dataDir,
    /** The one-time setup link the server printed on its first start. */
    setupUrl,
    url: (path = "/") => baseUrl + path,
    /** The last lines the server wrote to stderr (for failure messages). */
    log: () => log.join("\n"),
    exited: () => exited,
    /** A fresh setup link from `granary admin-token`. */
    adminToken: () => granary(["admin-token", "--data-dir", dataDir]).trim(),
    /** `granary status --json`: {version, users, admins, base_url}. */
    status: () => JSON.parse(granary(["status", "--json", "--data-dir", dataDir])),
    async stop() {
      if (exited === null) {
        const gone = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await gone;
        clearTimeout(t);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Builds a signed .gpk in a new temporary directory: a minimal app packing `src/` as /app with
 * an executable /app/run, two roles, one permission and an icon. Returns {path, appId, title, dir}.
 */
export function makePackage({ title = "Test Board", version = 3, marketingVersion = "1.2", payloadBytes = 0 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "granary-pkg-"));
  const keyring = join(dir, "keyring");
  const appId = granary(["keygen", "--keyring", keyring]).trim();
  mkdirSync(join(dir, "src"));
  writeFileSync(join(dir, "src/run"), "not really a program: grains are not wired up yet\n");
  chmodSync(join(dir, "src/run"), 0o755);
  if (payloadBytes > 0) writeFileSync(join(dir, "src/payload.bin"), randomBytes(payloadBytes));
  writeFileSync(
    join(dir, "icon.svg"),
    `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64"><rect width="64" height="64" rx="12" fill="#2a7d4f"/><circle cx="32" cy="32" r="14" fill="#f4d35e"/></svg>`,
  );
  writeFileSync(
    join(dir, "granary.toml"),
    `[app]
id = "${appId}"
title = "${title}"
version = ${version}
marketing_version = "${marketingVersion}"
continue_command = ["/app/run"]

[[actions]]
title = "New board"
noun = "board"
command = ["/app/run", "--new"]

[[permissions]]
name = "edit"
title = "Edit cards"
description = "Add, move and delete cards"

[[roles]]
name = "viewer"
title = "Viewer"
description = "Can look at the board"

[[roles]]
name = "editor"
title = "Editor"
permissions = ["edit"]
default = true

[metadata]
icon = "icon.svg"
description = "Cards in columns, for browser tests"
author = "Granary tests"
license = "Apache-2.0"

[files]
map = [{ to = "/app", from = "src" }]
include = ["/app"]
`,
  );
  const path = join(dir, "app.gpk");
  granary(["pack", dir, "-o", path, "--keyring", keyring]);
  return { path, appId, title, dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

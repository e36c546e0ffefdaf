// A real `granary serve` on a free loopback port with its own temporary data directory, plus
// the CLI commands that talk to it (admin-token, status) and package building (keygen, pack).
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, rmdirSync, writeFileSync, mkdirSync, chmodSync, readdirSync, readFileSync, existsSync } from "node:fs";
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

/**
 * The static bridge every grain runs: GRANARY_BRIDGE (the Rust test builds it). Unset, the
 * server looks next to its own binary and in the cargo target (`scripts/build-bridge.sh debug`).
 */
export function bridgeFile() {
  return process.env.GRANARY_BRIDGE || null;
}

/** The signed Echo sample app package: GRANARY_ECHO_GPK (the Rust test builds and packs it). */
export function echoPackage() {
  const gpk = process.env.GRANARY_ECHO_GPK;
  if (!gpk) throw new Error("GRANARY_ECHO_GPK is not set: run the suite with `cargo test -p granary-tests --test browser`, or pack apps/echo (see its README) and point GRANARY_ECHO_GPK at the .gpk");
  return gpk;
}

/** The signed Notes sample app package: GRANARY_NOTES_GPK (the Rust test builds and packs it). */
export function notesPackage() {
  const gpk = process.env.GRANARY_NOTES_GPK;
  if (!gpk) throw new Error("GRANARY_NOTES_GPK is not set: run the suite with `cargo test -p granary-tests --test browser`, or pack apps/notes (see its README) and point GRANARY_NOTES_GPK at the .gpk");
  return gpk;
}

/** The signed Dashboard sample app package: GRANARY_DASHBOARD_GPK (the Rust test builds and packs it). */
export function dashboardPackage() {
  const gpk = process.env.GRANARY_DASHBOARD_GPK;
  if (!gpk) throw new Error("GRANARY_DASHBOARD_GPK is not set: run the suite with `cargo test -p granary-tests --test browser`, or pack apps/dashboard (see its README) and point GRANARY_DASHBOARD_GPK at the .gpk");
  return gpk;
}

/** The signed Counter sample app package: GRANARY_COUNTER_GPK (the Rust test builds and packs it). */
export function counterPackage() {
  const gpk = process.env.GRANARY_COUNTER_GPK;
  if (!gpk) throw new Error("GRANARY_COUNTER_GPK is not set: run the suite with `cargo test -p granary-tests --test browser`, or pack apps/counter (see its README) and point GRANARY_COUNTER_GPK at the .gpk");
  return gpk;
}

function granary(args, opts = {}) {
  try {
    return execFileSync(granaryBin(), args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], ...opts });
  } catch (e) {
    throw new Error(`granary ${args.join(" ")} failed (${e.status}): ${e.stderr || e.message}`);
  }
}

/** A free TCP port on 127.0.0.1 (for servers a scenario starts itself). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The pids of the `granary supervisor` processes (one per running grain) whose grain lives in `dataDir`. */
export function supervisorsOf(dataDir) {
  const pids = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    let argv;
    try {
      argv = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
    } catch {
      continue;
    }
    if (argv[1] === "supervisor" && argv.some((a) => a.startsWith(`${dataDir}/grains/`))) pids.push(Number(d));
  }
  return pids;
}

/** Sends SIGTERM to `pids`, waits up to `graceMs` for them to exit, then SIGKILLs the rest. */
async function stopPids(pids, graceMs = 5_000) {
  const alive = (pid) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
  for (const pid of pids) {
    try { process.kill(pid, "SIGTERM"); } catch { /* gone */ }
  }
  const deadline = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const pid of pids.filter(alive)) {
    try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
  }
}

/**
 * Removes the (empty) cgroups `granary/grain-<id>` of the grains in `dataDir`, which a supervisor
 * ended by a signal leaves behind (v2: /sys/fs/cgroup/granary; v1: one per controller).
 */
async function removeGrainCgroups(dataDir) {
  let ids = [];
  try {
    ids = readdirSync(join(dataDir, "grains"));
  } catch {
    return;
  }
  const roots = ["/sys/fs/cgroup", ...readdirSync("/sys/fs/cgroup").map((c) => join("/sys/fs/cgroup", c))];
  for (const id of ids) {
    for (const root of roots) {
      const dir = join(root, "granary", `grain-${id}`);
      // A killed sandbox's processes may take a moment to be released.
      for (let tries = 0; existsSync(dir) && tries < 40; tries++) {
        try {
          rmdirSync(dir);
        } catch {
          await new Promise((r) => setTimeout(r, 25));
        }
      }
    }
  }
}

/**
 * The host every server of the suite uses: the server's own default (`granary.localhost`).
 * Browsers resolve every `*.localhost` name to loopback, and because `granary.localhost` has a
 * registrable part, the grain origins `<session>.granary.localhost:PORT` are same-site with the
 * shell, so Chromium accepts the framed grain's `granary_grain` cookie (on bare `localhost` it
 * would be a third party and refused).
 */
export const GRAIN_HOST = "granary.localhost";

/**
 * Starts a server and waits for its one-time setup link. The base URL is `http://HOST:PORT`
 * (GRAIN_HOST unless `host` is given), so browse to `server.url(path)` exactly. `args` are
 * extra `granary serve` arguments (e.g. `["--resolve", "api.test=127.0.0.1"]`).
 */
export async function startServer({ timeoutMs = 20_000, host = GRAIN_HOST, args: extra = [] } = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), "granary-browser-"));
  // Like /var/lib/granary: the sandbox cannot set up a grain under a 0700 data directory
  // (mkdtemp's mode); it fails at "mount tmpfs on <data>/apps/<package>/tmp" with EACCES.
  chmodSync(dataDir, 0o755);
  const port = await freePort();
  const baseUrl = `http://${host}:${port}`;
  const args = ["serve", "--data-dir", dataDir, "--listen", `127.0.0.1:${port}`, "--base-url", baseUrl];
  if (bridgeFile()) args.push("--bridge", bridgeFile());
  // Supervisors outlive the server (a restarted server reuses them); stop() ends them, and the
  // short idle period is a backstop should the runner itself die.
  args.push("--idle", "60");
  // No sample apps (a developer's target/sample-apps would otherwise be installed on first run).
  args.push("--sample-apps", join(dataDir, "no-samples"));
  args.push(...extra);
  const child = spawn(granaryBin(), args, {
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
      // The grains this server started (granary serve has no shutdown that stops them).
      await stopPids(supervisorsOf(dataDir));
      await removeGrainCgroups(dataDir);
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

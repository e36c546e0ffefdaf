//! Benchmark, not a test (ignored; `scripts/bench-gateway.sh` runs it in release): the same
//! echo binary through the whole path (gateway → supervisor → sandbox → bridge → echo) and
//! directly on loopback. Small GETs with `wrk` (keep-alive connections; 8 and 32 in rounds of
//! gateway, direct and nginx back to back, with the CPU time each process spent per request,
//! then 1 for the unloaded added latency, in rounds too, and once chunked; and a 7-byte answer
//! that costs echo almost nothing, at 8), 100 MiB downloads and uploads,
//! and cold starts after Restart and after an idle stop. If nginx is installed, the loaded runs
//! also go through two nginx reverse proxies in front of the direct echo: what two lean HTTP
//! hops cost on the same machine in the same run.
//! Prints a table for BENCHMARKS.md, then the figures read against the HTTP path's targets
//! (SPEC.md, "Benchmark targets").

mod common;
mod echo_grain;
mod server;

use echo_grain::{Origin, Pattern, Platform};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `wrk` with `connections` keep-alive connections against `port` with `Host`/`Cookie`;
/// returns (req/s, p50 ms, p99 ms).
fn wrk(connections: &str, port: u16, path: &str, host: &str, cookie: &str) -> (f64, f64, f64) {
    let out = Command::new("wrk")
        .args(["-t", &env_or("BENCH_THREADS", "1"), "-c", connections, "-d", &env_or("BENCH_SECONDS", "10"), "--latency"])
        .args(["-H", &format!("Host: {host}")])
        .args(if cookie.is_empty() { vec![] } else { vec!["-H".to_owned(), format!("Cookie: {cookie}")] })
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}");
    assert!(!text.contains("Non-2xx"), "wrk saw errors:\n{text}");
    let ms = |v: &str| -> f64 {
        let v = v.trim();
        if let Some(x) = v.strip_suffix("us") {
            x.parse::<f64>().unwrap() / 1000.0
        } else if let Some(x) = v.strip_suffix("ms") {
            x.parse().unwrap()
        } else if let Some(x) = v.strip_suffix('s') {
            x.parse::<f64>().unwrap() * 1000.0
        } else {
            panic!("latency {v}")
        }
    };
    let field = |prefix: &str| text.lines().find_map(|l| l.trim().strip_prefix(prefix).map(str::to_owned)).unwrap_or_else(|| panic!("{prefix} in {text}"));
    (field("Requests/sec:").trim().parse().unwrap(), ms(&field("50%")), ms(&field("99%")))
}

/// A `wrk` result (req/s, p50 ms, p99 ms) and the CPU per request of the processes measured.
type Run = ((f64, f64, f64), String);

/// Runs `run` (a `wrk` run) and returns its result with the CPU microseconds per request that
/// each process under `roots` spent meanwhile, summed by command name.
fn cpu_per_request(roots: &[u32], run: impl FnOnce() -> (f64, f64, f64)) -> Run {
    let all = || roots.iter().flat_map(|r| echo_grain::processes_below(*r)).map(|p| (p.pid, p.comm, p.cpu_seconds)).collect::<Vec<_>>();
    let before = all();
    let t = Instant::now();
    let r = run();
    let requests = r.0 * t.elapsed().as_secs_f64();
    let after = all();
    let mut by_name: Vec<(String, f64)> = Vec::new();
    for (pid, comm, cpu) in after {
        let was = before.iter().find(|b| b.0 == pid).map_or(0.0, |b| b.2);
        let us = (cpu - was) * 1e6 / requests;
        match by_name.iter_mut().find(|(n, _)| *n == comm) {
            Some(e) => e.1 += us,
            None => by_name.push((comm, us)),
        }
    }
    by_name.retain(|(_, us)| *us >= 0.5);
    let text = by_name.iter().map(|(n, us)| format!("{n} {us:.0} µs")).collect::<Vec<_>>().join(", ");
    (r, text)
}

/// Two nginx reverse proxies in a chain in front of the direct echo (`wrk → nginx → nginx →
/// echo`): a reference for what two lean HTTP hops cost on this machine, each one process with
/// keep-alive connections to the next and no buffering, as the gateway and the bridge are.
/// None if nginx is not installed (`apt-get install nginx-light`).
struct NginxChain {
    front_port: u16,
    procs: Vec<std::process::Child>,
    _dir: tempfile::TempDir,
}

impl NginxChain {
    fn start(upstream_port: u16) -> Option<Self> {
        if Command::new("nginx").arg("-v").stderr(Stdio::null()).status().is_err() {
            eprintln!("nginx is not installed: no two-proxy reference (apt-get install nginx-light)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (front, back) = (free_port(), free_port());
        let mut procs = Vec::new();
        for (name, listen, upstream) in [("back", back, upstream_port), ("front", front, back)] {
            let prefix = dir.path().join(name);
            std::fs::create_dir_all(&prefix).unwrap();
            let conf = format!(
                "worker_processes 1; master_process off; daemon off; error_log {p}/error.log; pid {p}/nginx.pid;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{ access_log off; upstream up {{ server 127.0.0.1:{upstream}; keepalive 64; }}\n\
                 server {{ listen 127.0.0.1:{listen}; location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; proxy_request_buffering off; }} }} }}\n",
                p = prefix.display()
            );
            std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
            procs.push(Command::new("nginx").arg("-c").arg(prefix.join("nginx.conf")).arg("-p").arg(&prefix).stderr(Stdio::null()).spawn().unwrap());
            let t = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err() {
                assert!(t.elapsed() < Duration::from_secs(10), "nginx did not listen on {listen}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Some(NginxChain { front_port: front, procs, _dir: dir })
    }

    fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|c| c.id()).collect()
    }
}

impl Drop for NginxChain {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Seconds to download `n` bytes (read and dropped).
fn download(o: &Origin, n: u64) -> f64 {
    let t = Instant::now();
    let r = o.raw("GET", &format!("/download?bytes={n}"), &[], None).unwrap();
    assert_eq!(r.status, 200);
    let got = std::io::copy(&mut r.reader.take(n), &mut std::io::sink()).unwrap();
    assert_eq!(got, n);
    t.elapsed().as_secs_f64()
}

fn upload(o: &Origin, n: u64) -> f64 {
    let t = Instant::now();
    let r = o.raw("POST", "/upload", &[], Some((n, &mut Pattern(0)))).unwrap();
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.body_string()).unwrap();
    assert_eq!(v["bytes"].as_u64(), Some(n));
    t.elapsed().as_secs_f64()
}

/// Time from sending a request to the first byte of the response.
fn first_byte(o: &Origin, path: &str) -> f64 {
    let t = Instant::now();
    let r = o.raw("GET", path, &[], None).unwrap();
    let d = t.elapsed().as_secs_f64();
    assert_eq!(r.status, 200);
    d
}

/// `rounds` rounds of `round` (gateway, direct and maybe nginx, back to back): this machine's
/// speed drifts by ±20 % over minutes, so each ratio compares runs made seconds apart. Returns
/// table rows for the median round (by ratio), with the range of the ratios, and the figures
/// the targets are read on ([`Rounds`]).
fn rounds_of(what: &str, loaded: &str, rounds: usize, mut round: impl FnMut() -> (Run, Run, Option<Run>)) -> Rounds {
    let mut runs: Vec<(Run, Run, Option<Run>)> = (0..rounds).map(|_| round()).collect();
    let ratio = |r: &(Run, Run, Option<Run>)| r.0 .0 .0 / r.1 .0 .0;
    runs.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    let range = format!("{:.2}–{:.2}", ratio(&runs[0]), ratio(&runs[runs.len() - 1]));
    let (((g_rps, g_p50, g_p99), g_cpu), ((d_rps, d_p50, d_p99), d_cpu), n) = &runs[runs.len() / 2];
    // The added p50 of the round with the median added p50 (not necessarily the median ratio's).
    let mut added: Vec<f64> = runs.iter().map(|r| r.0 .0 .1 - r.1 .0 .1).collect();
    added.sort_by(f64::total_cmp);
    let median_added_p50 = added[added.len() / 2];
    let mut rows = vec![format!(
        "| {what}, -c {loaded}, req/s (median of {rounds} rounds) | {g_rps:.0} | {d_rps:.0} | {:.2}× (rounds: {range}) |\n\
         | {what}, -c {loaded}, CPU per request | {g_cpu} | {d_cpu} | |\n\
         | {what}, -c {loaded}, p50 latency | {g_p50:.3} ms | {d_p50:.3} ms | {:+.3} ms |\n\
         | {what}, -c {loaded}, p99 latency | {g_p99:.3} ms | {d_p99:.3} ms | {:+.3} ms |",
        g_rps / d_rps,
        g_p50 - d_p50,
        g_p99 - d_p99
    )];
    if let Some(((n_rps, n_p50, _), n_cpu)) = n {
        rows.push(format!(
            "| {what}, -c {loaded}, two nginx proxies in front of echo (reference, same round) | {n_rps:.0} req/s ({:.2}× direct), p50 {n_p50:.3} ms ({:+.3} ms) | {n_cpu} (both proxies) | |",
            n_rps / d_rps,
            n_p50 - d_p50
        ));
    }
    Rounds { rows, ratio: g_rps / d_rps, median_added_p50, added_range: (added[0], added[added.len() - 1]) }
}

/// The table rows of [`rounds_of`] and the figures the targets are read on.
struct Rounds {
    rows: Vec<String>,
    /// Gateway req/s over direct req/s in the median round.
    ratio: f64,
    /// The median over the rounds of gateway p50 minus direct p50, in ms.
    median_added_p50: f64,
    /// The least and the most added p50 of the rounds, in ms.
    added_range: (f64, f64),
}

#[test]
#[ignore = "a benchmark: scripts/bench-gateway.sh"]
fn bench_gateway_vs_direct() {
    const BIG: u64 = 100 << 20;
    let mut p = Platform::start_with(&["--idle", "600"]);
    let (grain, mut o) = p.grain("Bench");
    assert_eq!(o.visits(), 1);

    // The same binary, directly on the host's loopback.
    let var = tempfile::tempdir().unwrap();
    let mut direct = Command::new(echo_grain::echo_binary()).arg("0").env("ECHO_VAR_DIR", var.path()).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(direct.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let direct_port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    let mut d = Origin::new(&p.server, &format!("127.0.0.1:{direct_port}"));
    d.port = direct_port;

    let small = "/download?bytes=1024";
    let nginx = NginxChain::start(direct_port);
    // For profiling by hand (perf, strace): print how to load both sides, then wait.
    if let Ok(secs) = std::env::var("BENCH_HOLD") {
        println!("\nserver pid {} (bridge and echo are its descendants), direct echo pid {}", p.server.pid(), direct.id());
        println!("gateway: wrk -t 1 -c 8 -d 10 -H 'Host: {}' -H 'Cookie: {}' http://127.0.0.1:{}{small}", o.host, o.cookie_header(), o.port);
        println!("direct:  wrk -t 1 -c 8 -d 10 http://127.0.0.1:{direct_port}{small}");
        std::thread::sleep(Duration::from_secs(secs.parse().expect("BENCH_HOLD: seconds")));
    }
    // Loaded runs at each connection count (BENCH_CONNECTIONS, space-separated), then one
    // connection (one request at a time: the path's own latency, unloaded), each in
    // BENCH_ROUNDS rounds (`rounds_of`).
    let rounds: usize = env_or("BENCH_ROUNDS", "5").parse().expect("BENCH_ROUNDS: a number");
    let mut loaded_rows = Vec::new();
    let mut loaded_figures = Vec::new();
    let gateway = |loaded: &str, path: &str| cpu_per_request(&[p.server.pid()], || wrk(loaded, o.port, path, &o.host, &o.cookie_header()));
    let straight = |loaded: &str, path: &str| cpu_per_request(&[direct.id()], || wrk(loaded, direct_port, path, &d.host, ""));
    let proxied = |loaded: &str, path: &str| nginx.as_ref().map(|n| cpu_per_request(&n.pids(), || wrk(loaded, n.front_port, path, &d.host, "")));
    for loaded in env_or("BENCH_CONNECTIONS", "8 32").split_whitespace() {
        let r = rounds_of("1 KiB GET", loaded, rounds, || (gateway(loaded, small), straight(loaded, small), proxied(loaded, small)));
        loaded_rows.extend(r.rows.iter().cloned());
        loaded_figures.push((loaded.to_owned(), r));
    }
    // The same path with an answer that costs echo almost nothing: what the path adds when the
    // app is cheap. `/download` builds a 64 KiB pattern for every answer, some 60 µs of echo's
    // CPU, which the ratio above counts on both sides.
    let lean = "/status/200";
    for loaded in env_or("BENCH_LEAN_CONNECTIONS", "8").split_whitespace() {
        loaded_rows.extend(rounds_of("7-byte GET (/status/200)", loaded, rounds, || (gateway(loaded, lean), straight(loaded, lean), proxied(loaded, lean))).rows);
    }
    let unloaded = rounds_of("1 KiB GET", "1", rounds, || (gateway("1", small), straight("1", small), proxied("1", small)));
    // A streamed (chunked) answer: the head and each chunk are separate writes.
    let chunked = "/download?bytes=1024&chunked=1";
    let (_, gc_p50, gc_p99) = wrk("1", o.port, chunked, &o.host, &o.cookie_header());
    let (_, dc_p50, dc_p99) = wrk("1", direct_port, chunked, &d.host, "");

    let g_down = download(&o, BIG);
    let d_down = download(&d, BIG);
    let g_up = upload(&o, BIG);
    let d_up = upload(&d, BIG);

    let mut restarts = Vec::new();
    for _ in 0..5 {
        p.grain_action(&grain, "restart");
        restarts.push(first_byte(&o, small) * 1000.0);
    }
    let _ = direct.kill();
    let _ = direct.wait();

    // Idle stop: a server whose grains stop after 2 s without use.
    let mut q = Platform::start_with(&["--idle", "2"]);
    let (_, mut oi) = q.grain("Idle");
    assert_eq!(oi.visits(), 1);
    let t = Instant::now();
    while !echo_grain::supervisor_pids(q.server.pid()).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(30), "the grain never stopped for idleness");
        std::thread::sleep(Duration::from_millis(100));
    }
    let idle_cold = first_byte(&oi, small) * 1000.0;

    let mb = |s: f64| BIG as f64 / s / 1e6;
    restarts.sort_by(f64::total_cmp);
    for row in &loaded_rows {
        println!("{row}");
    }
    for row in &unloaded.rows {
        println!("{row}");
    }
    println!("| 1 KiB chunked GET, -c 1, p50 / p99 latency | {gc_p50:.3} / {gc_p99:.3} ms | {dc_p50:.3} / {dc_p99:.3} ms | {:+.3} ms p50 |", gc_p50 - dc_p50);
    println!("| 100 MiB download | {:.0} MB/s ({g_down:.2} s) | {:.0} MB/s ({d_down:.2} s) | {:.2}× |", mb(g_down), mb(d_down), d_down / g_down);
    println!("| 100 MiB upload | {:.0} MB/s ({g_up:.2} s) | {:.0} MB/s ({d_up:.2} s) | {:.2}× |", mb(g_up), mb(d_up), d_up / g_up);
    println!("| cold start after Restart, first byte (5 runs) | median {:.0} ms (min {:.0}, max {:.0}) | — | |", restarts[2], restarts[0], restarts[4]);
    println!("| cold start after idle stop, first byte | {idle_cold:.0} ms | — | |");

    // The targets of the HTTP path, read as SPEC.md ("Benchmark targets") says.
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("\nAgainst the targets (SPEC.md, \"Benchmark targets\"), medians of {rounds} rounds:");
    let u = &unloaded;
    for (loaded, r) in loaded_figures.iter().map(|(l, r)| (l.as_str(), r)).chain([("1", u)]) {
        println!("- 1 KiB GET, -c {loaded}: {:.2}× direct req/s (target ≥ 0.5×): {}", r.ratio, met(r.ratio >= 0.5));
    }
    println!(
        "- added p50 unloaded (-c 1): {:+.3} ms (rounds {:+.3} to {:+.3}; target ≤ +0.3 ms): {}",
        u.median_added_p50,
        u.added_range.0,
        u.added_range.1,
        met(u.median_added_p50 <= 0.3)
    );
    for (loaded, r) in &loaded_figures {
        println!("- added p50 at -c {loaded} (queueing: p50 ≈ connections / req/s; reported, not a target): {:+.3} ms", r.median_added_p50);
    }
}

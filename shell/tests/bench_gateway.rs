//! Benchmark, not a test (ignored; `scripts/bench-gateway.sh` runs it in release): the same
//! echo binary through the whole path (gateway → supervisor → sandbox → bridge → echo) and
//! directly on loopback. Small GETs with `wrk` (keep-alive connections; 8, then 1 for the
//! unloaded added latency), 100 MiB downloads
//! and uploads, and cold starts after Restart and after an idle stop. Prints a table for
//! BENCHMARKS.md.

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
    let loaded = env_or("BENCH_CONNECTIONS", "8");
    let (g_rps, g_p50, g_p99) = wrk(&loaded, o.port, small, &o.host, &o.cookie_header());
    let (d_rps, d_p50, d_p99) = wrk(&loaded, direct_port, small, &d.host, "");
    // One connection: one request at a time, so the latency is the path's own (unloaded).
    let (g1_rps, g1_p50, g1_p99) = wrk("1", o.port, small, &o.host, &o.cookie_header());
    let (d1_rps, d1_p50, d1_p99) = wrk("1", direct_port, small, &d.host, "");

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
    println!("| 1 KiB GET, -c {loaded}, req/s | {g_rps:.0} | {d_rps:.0} | {:.2}× |", g_rps / d_rps);
    println!("| 1 KiB GET, -c {loaded}, p50 latency | {g_p50:.3} ms | {d_p50:.3} ms | {:+.3} ms |", g_p50 - d_p50);
    println!("| 1 KiB GET, -c {loaded}, p99 latency | {g_p99:.3} ms | {d_p99:.3} ms | {:+.3} ms |", g_p99 - d_p99);
    println!("| 1 KiB GET, -c 1, req/s | {g1_rps:.0} | {d1_rps:.0} | {:.2}× |", g1_rps / d1_rps);
    println!("| 1 KiB GET, -c 1, p50 latency | {g1_p50:.3} ms | {d1_p50:.3} ms | {:+.3} ms |", g1_p50 - d1_p50);
    println!("| 1 KiB GET, -c 1, p99 latency | {g1_p99:.3} ms | {d1_p99:.3} ms | {:+.3} ms |", g1_p99 - d1_p99);
    println!("| 100 MiB download | {:.0} MB/s ({g_down:.2} s) | {:.0} MB/s ({d_down:.2} s) | {:.2}× |", mb(g_down), mb(d_down), d_down / g_down);
    println!("| 100 MiB upload | {:.0} MB/s ({g_up:.2} s) | {:.0} MB/s ({d_up:.2} s) | {:.2}× |", mb(g_up), mb(d_up), d_up / g_up);
    println!("| cold start after Restart, first byte (5 runs) | median {:.0} ms (min {:.0}, max {:.0}) | — | |", restarts[2], restarts[0], restarts[4]);
    println!("| cold start after idle stop, first byte | {idle_cold:.0} ms | — | |");
}

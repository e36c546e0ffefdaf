//! 100 MB request and response bodies stream through the bridge with bounded memory. Alone in
//! its test binary so the process's peak RSS (VmHWM) measures only this test.

mod common;

use common::{call, run, Body, ALICE};

const MB100: u64 = 100 << 20;

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn hundred_megabyte_bodies_stream_both_ways_in_bounded_memory() {
    run(|_| {}, |h| async move {
        let s = h.session(&ALICE).await;
        // Warm up allocators and connections, then measure from here.
        let r = call(&s, "POST", "/upload", &[], Body::Streamed { total: 1 << 20, chunk: 65536, declared: 1 << 20 }).await;
        assert_eq!(r.status, 200);
        let r = call(&s, "GET", "/download?n=1048576", &[], Body::None).await;
        assert!(r.completed);
        let before = peak_rss_kib();

        for declared in [MB100, u64::MAX] {
            let r = call(&s, "PUT", "/upload", &[], Body::Streamed { total: MB100, chunk: 65536, declared }).await;
            assert_eq!(r.text(), format!("bytes={MB100} mismatches=0"), "declared {declared}");
        }
        for (query, kind) in [("", format!("streamed({MB100})")), ("&chunked", format!("streamed({})", u64::MAX))] {
            let r = call(&s, "GET", &format!("/download?n={MB100}{query}"), &[], Body::None).await;
            assert_eq!((r.status, &r.kind), (200, &kind));
            assert!(r.completed, "done() not called");
            assert_eq!(r.streamed, (MB100, 0));
        }

        let grown_mib = (peak_rss_kib() - before) / 1024;
        eprintln!("peak RSS grew by {grown_mib} MiB while moving 400 MiB");
        assert!(grown_mib < 32, "peak RSS grew by {grown_mib} MiB: a body was buffered");
    });
}

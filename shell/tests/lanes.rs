//! Request lanes through the whole path, as root (SPEC.md, "Request lanes"): once a session
//! exists, its requests without a streamed body go over the grain's lane — a second
//! connection to the grain's `web.sock` beside the RPC one — streamed downloads are claimed
//! over RPC with their ticket, large uploads stay on RPC, and a lane that ended with its
//! bridge (the app crashed) is replaced by the next request.

mod common;
mod echo_grain;
mod server;

use echo_grain::{Origin, Platform};

/// Connected sockets on the grain's `web.sock`, as the kernel lists them: the bridge's
/// accepted ends carry the listener's path (the server's ends have none).
fn web_sock_connections(p: &Platform, grain: &str) -> usize {
    let path = p.server.data.path().join("grains").join(grain).join("web.sock");
    let path = path.to_str().unwrap();
    std::fs::read_to_string("/proc/net/unix")
        .unwrap()
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 8 && f[5] == "03" && f[7] == path
        })
        .count()
}

fn exercise(o: &mut Origin) {
    let first = o.visits();
    let visits: Vec<u64> = (0..4).map(|_| o.visits()).collect();
    assert_eq!(visits, [first + 1, first + 2, first + 3, first + 4]);
    let seen = o.seen("POST", &[("X-Granary-User-Id", "spoofed")], b"small body");
    assert_ne!(seen["headers"]["x-granary-user-id"], "spoofed", "{seen}");
    let download = o.get("/download?bytes=3145728");
    assert_eq!((download.status, download.body.len()), (200, 3 << 20), "a streamed body claimed with its ticket");
    let big = vec![7u8; 1 << 20];
    let r = o.request("POST", "/upload", &[], &big);
    assert_eq!((r.status, r.json()["bytes"].as_u64()), (200, Some(1 << 20)), "a large upload on RPC");
}

#[test]
fn a_sessions_requests_take_the_grain_request_lane_and_a_new_one_after_a_crash() {
    echo_grain::require_root();
    let mut p = Platform::start();
    let (grain, mut o) = p.grain("Lanes");
    exercise(&mut o);
    assert_eq!(web_sock_connections(&p, &grain), 2, "one RPC connection and one lane to the bridge");
    // The app crashes: its bridge exits with it, ending both connections; the next requests
    // open them again on the new bridge.
    assert_eq!(o.get("/crash").status, 502);
    exercise(&mut o);
    assert_eq!(web_sock_connections(&p, &grain), 2, "the new bridge has one RPC connection and one lane");
}

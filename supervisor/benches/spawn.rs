//! Spawn cost: median of N starts of the static probe's `true` in a full sandbox (namespaces,
//! mounts, seccomp, cgroup) against a plain fork+exec of the same binary, in the same run.
//! Run as root: `cargo bench -p granary-supervisor`. Prints a table; asserts nothing.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

const N: usize = 60;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn measure(mut f: impl FnMut()) -> Vec<Duration> {
    f(); // warm the page cache
    (0..N)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

fn main() {
    common::require_root();
    let grain = common::Grain::new();
    let probe = grain.image.path().join("probe");
    let plain = measure(|| assert!(std::process::Command::new(&probe).arg("true").status().unwrap().success()));
    let run = |cgroup: bool| {
        let mut cfg = grain.config(&["true"]);
        cfg.cgroup = cgroup;
        move || assert_eq!(granary_supervisor::spawn(&cfg).unwrap().wait().unwrap(), 0)
    };
    let sandboxed = measure(run(true));
    let no_cgroup = measure(run(false));
    let p = median(plain);
    println!("spawn + wait of a static `true`, median of {N}");
    println!("{:<34} {:>10} {:>8}", "variant", "median", "ratio");
    for (name, d) in [("plain fork+exec", p), ("sandbox (all namespaces, cgroup)", median(sandboxed)), ("sandbox without cgroup", median(no_cgroup))] {
        println!("{:<34} {:>8.2}ms {:>7.1}x", name, d.as_secs_f64() * 1e3, d.as_secs_f64() / p.as_secs_f64());
    }
}

//! Measures one committed and flushed two-table transaction on sled, and the same without
//! the flush, to show what durability costs on this disk.
//!
//! `cargo run -p granary-store --example commit_cost [--release] -- [N] [DIR]`
//! (DIR defaults to a temporary directory; pass one on the disk the server will use.)

use std::time::{Duration, Instant};

use granary_store::{Db, SledStore, Store, Table, Writes};

const A: Table<u64, String> = Table::new("a");
const B: Table<u64, u64> = Table::new("b");

/// The `pct`th percentile of `v`.
fn percentile(v: &[Duration], pct: usize) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[(v.len() * pct / 100).min(v.len() - 1)]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|s| s.parse().expect("N must be a number"))
        .unwrap_or(500);
    assert!(n > 0, "N must be at least 1");
    let tmp = tempfile::tempdir().unwrap();
    let base = args
        .next()
        .map(Into::into)
        .unwrap_or_else(|| tmp.path().to_path_buf());

    let db = Db::open(base.join("flushed"), &[]).unwrap();
    let mut flushed = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        db.transaction(|tx| {
            tx.insert(&A, &i, &"x".repeat(200))?;
            tx.insert(&B, &i, &i)
        })
        .unwrap();
        flushed.push(t.elapsed());
    }

    // The same writes through the engine without flushing, for comparison.
    let raw = SledStore::open(base.join("unflushed")).unwrap();
    let mut unflushed = Vec::new();
    for i in 0..n {
        let mut w = Writes::new();
        w.entry("a")
            .or_default()
            .insert(i.to_be_bytes().to_vec(), Some(vec![b'x'; 202]));
        w.entry("b")
            .or_default()
            .insert(i.to_be_bytes().to_vec(), Some(i.to_string().into()));
        let t = Instant::now();
        raw.commit(&w).unwrap();
        unflushed.push(t.elapsed());
    }
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "{profile} build, {n} two-table transactions under {}",
        base.display()
    );
    println!("median committed+flushed: {:?}", percentile(&flushed, 50));
    println!("p99    committed+flushed: {:?}", percentile(&flushed, 99));
    println!("median committed only:    {:?}", percentile(&unflushed, 50));
}

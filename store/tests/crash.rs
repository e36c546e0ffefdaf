//! Crash safety: a child process commits numbered transactions into two tables and reports
//! each one after `transaction` returns; the parent SIGKILLs it mid-stream, reopens the
//! database, and checks that every reported number is in both tables and that the tables
//! agree (atomicity), across several kill/reopen rounds.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use granary_store::{Db, Table};

const CHILD_ENV: &str = "GRANARY_STORE_CRASH_CHILD_DB";
const LEDGER: Table<u64, (u64, String)> = Table::new("ledger");
const RECEIPTS: Table<String, u64> = Table::new("receipts");

fn receipt_key(n: u64) -> String {
    format!("r{n:020}")
}

/// The child half: only meaningful when started by the parent test, hence ignored.
#[test]
#[ignore = "child process of kill_9_loses_no_committed_transaction, which runs it"]
fn crash_child() {
    let path = std::env::var(CHILD_ENV).expect("run only by kill_9_loses_no_committed_transaction");
    let db = Db::open(&path, &[]).unwrap();
    let mut n = match db.iter(&LEDGER).unwrap().last() {
        Some(last) => last.unwrap().0 + 1,
        None => 0,
    };
    let start = Instant::now();
    // Bounded in case the parent dies without killing us.
    while start.elapsed() < Duration::from_secs(30) {
        db.transaction(|tx| {
            tx.insert(&LEDGER, &n, &(n, "x".repeat(200)))?;
            tx.insert(&RECEIPTS, &receipt_key(n), &n)
        })
        .unwrap();
        println!("committed {n}");
        n += 1;
    }
}

/// Start the child, read its reports until `stop_after` or a deadline, SIGKILL it, and
/// return every number it reported (including ones still in the pipe at the kill).
fn run_child_and_kill(path: &std::path::Path, stop_after: usize) -> Vec<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("committed ") {
                tx.send(n.trim().parse::<u64>().unwrap()).unwrap();
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reported = Vec::new();
    while reported.len() < stop_after {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(n) => reported.push(n),
            Err(_) => break,
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child must die by SIGKILL, not exit: {status}"
    );
    reader.join().unwrap();
    reported.extend(rx.try_iter());
    reported
}

#[test]
fn kill_9_loses_no_committed_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut all_reported = BTreeSet::new();
    for (round, stop_after) in [200, 137, 251].into_iter().enumerate() {
        let reported = run_child_and_kill(&path, stop_after);
        assert!(
            reported.len() >= 20,
            "round {round}: the child reported only {reported:?}"
        );
        all_reported.extend(reported);

        let db = Db::open(&path, &[]).unwrap();
        let ledger: BTreeSet<u64> = db.iter(&LEDGER).unwrap().map(|r| r.unwrap().0).collect();
        let receipts: BTreeSet<u64> = db.iter(&RECEIPTS).unwrap().map(|r| r.unwrap().1).collect();
        for n in &ledger {
            assert_eq!(db.get(&LEDGER, n).unwrap().unwrap().0, *n);
            assert_eq!(db.get(&RECEIPTS, &receipt_key(*n)).unwrap(), Some(*n));
        }
        assert_eq!(
            ledger, receipts,
            "round {round}: a transaction landed in only one table"
        );
        let missing: Vec<&u64> = all_reported.difference(&ledger).collect();
        assert!(
            missing.is_empty(),
            "round {round}: committed but lost: {missing:?}"
        );
        let max = *ledger.last().unwrap();
        assert_eq!(
            ledger,
            (0..=max).collect(),
            "round {round}: commits are sequential, so no gaps"
        );
    }
}

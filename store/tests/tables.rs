//! Typed tables, scans and transactions, on both engines.

use granary_store::{Db, Error, MemoryStore, SledStore, Store, Table, Writes};
use serde::{Deserialize, Serialize};
use std::ops::Bound;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    name: String,
    age: u32,
}

const USERS: Table<String, User> = Table::new("users");
const COUNTS: Table<u64, u64> = Table::new("counts");
const GRANTS: Table<(String, u64), String> = Table::new("grants");
const HASHES: Table<[u8; 4], Vec<u8>> = Table::new("hashes");

/// One database per engine; the temp dir must outlive the sled one.
fn engines() -> Vec<(&'static str, Db, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sled = Db::open(dir.path().join("db"), &[]).unwrap();
    vec![
        ("memory", Db::memory(&[]).unwrap(), None),
        ("sled", sled, Some(dir)),
    ]
}

fn user(name: &str, age: u32) -> User {
    User {
        name: name.into(),
        age,
    }
}

#[test]
fn typed_values_round_trip() {
    for (engine, db, _dir) in engines() {
        assert_eq!(db.get(&USERS, "ada").unwrap(), None, "{engine}");
        db.insert(&USERS, "ada", &user("Ada", 36)).unwrap();
        db.insert(&USERS, &"bob".to_string(), &user("Bob", 7))
            .unwrap();
        assert_eq!(
            db.get(&USERS, "ada").unwrap(),
            Some(user("Ada", 36)),
            "{engine}"
        );
        db.insert(&USERS, "ada", &user("Ada", 37)).unwrap();
        assert_eq!(db.get(&USERS, "ada").unwrap().unwrap().age, 37, "{engine}");
        db.remove(&USERS, "ada").unwrap();
        db.remove(&USERS, "nobody").unwrap();
        assert_eq!(db.get(&USERS, "ada").unwrap(), None, "{engine}");
        assert_eq!(
            db.get(&USERS, "bob").unwrap(),
            Some(user("Bob", 7)),
            "{engine}"
        );

        db.insert(&COUNTS, &u64::MAX, &3).unwrap();
        assert_eq!(db.get(&COUNTS, &u64::MAX).unwrap(), Some(3), "{engine}");
        db.insert(&GRANTS, &("g\0x".to_string(), 9), &"read".to_string())
            .unwrap();
        assert_eq!(
            db.get(&GRANTS, &("g\0x".to_string(), 9))
                .unwrap()
                .as_deref(),
            Some("read")
        );
        db.insert(&HASHES, &[0, 1, 2, 3], &vec![9, 9]).unwrap();
        assert_eq!(
            db.get(&HASHES, &[0, 1, 2, 3]).unwrap(),
            Some(vec![9, 9]),
            "{engine}"
        );
    }
}

#[test]
fn scans_come_back_in_key_order() {
    for (engine, db, _dir) in engines() {
        for n in [300u64, 2, 256, 1, 70_000, 0] {
            db.insert(&COUNTS, &n, &(n * 10)).unwrap();
        }
        let all: Vec<u64> = db.iter(&COUNTS).unwrap().map(|r| r.unwrap().0).collect();
        assert_eq!(all, [0, 1, 2, 256, 300, 70_000], "{engine}");
        let mid: Vec<(u64, u64)> = db
            .range(&COUNTS, 2u64..=300)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(mid, [(2, 20), (256, 2560), (300, 3000)], "{engine}");
        let (high, low) = (300u64, 2u64);
        assert_eq!(
            db.range(&COUNTS, high..low).unwrap().count(),
            0,
            "{engine}: reversed range"
        );
        assert_eq!(
            db.range(&COUNTS, (Bound::Excluded(2u64), Bound::Excluded(2u64)))
                .unwrap()
                .count(),
            0
        );

        for name in ["app/b", "apq", "app/a", "ap", "app/c/d", "zed"] {
            db.insert(&USERS, name, &user(name, 1)).unwrap();
        }
        let apps: Vec<String> = db
            .scan_prefix(&USERS, "app/")
            .unwrap()
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(apps, ["app/a", "app/b", "app/c/d"], "{engine}");
        let between: Vec<String> = db
            .range(&USERS, "apq".."zed")
            .unwrap()
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(between, ["apq"], "{engine}");

        for (grain, n) in [
            ("g2", 1u64),
            ("g1", 300),
            ("g1", 2),
            ("g1\0", 0),
            ("g10", 5),
            ("g1", 10),
        ] {
            db.insert(&GRANTS, &(grain.to_string(), n), &format!("{grain}:{n}"))
                .unwrap();
        }
        let g1: Vec<u64> = db
            .scan_prefix(&GRANTS, "g1")
            .unwrap()
            .map(|r| r.unwrap().0 .1)
            .collect();
        assert_eq!(
            g1,
            [2, 10, 300],
            "{engine}: exact first part, second part in order"
        );
    }
}

#[test]
fn transaction_that_fails_writes_nothing_in_any_table() {
    for (engine, db, _dir) in engines() {
        db.insert(&COUNTS, &1, &1).unwrap();
        let result: Result<(), Error> = db.transaction(|tx| {
            tx.insert(&USERS, "ada", &user("Ada", 36))?;
            tx.insert(&COUNTS, &1, &2)?;
            tx.remove(&COUNTS, &1)?;
            assert_eq!(
                tx.get(&USERS, "ada")?,
                Some(user("Ada", 36)),
                "reads own writes"
            );
            Err(Error::Rejected("quota exceeded".into()))
        });
        let err = result.unwrap_err();
        assert!(
            err.to_string().contains("nothing was written"),
            "{engine}: {err}"
        );
        assert_eq!(db.get(&USERS, "ada").unwrap(), None, "{engine}");
        assert_eq!(db.get(&COUNTS, &1).unwrap(), Some(1), "{engine}");
    }
}

#[test]
fn transaction_that_succeeds_writes_every_table() {
    for (engine, db, _dir) in engines() {
        db.insert(&COUNTS, &5, &50).unwrap();
        db.insert(&COUNTS, &6, &60).unwrap();
        let seen = db
            .transaction(|tx| {
                tx.insert(&USERS, "ada", &user("Ada", 36))?;
                tx.insert(&COUNTS, &7, &70)?;
                tx.remove(&COUNTS, &5)?;
                let keys: Vec<u64> = tx.iter(&COUNTS)?.map(|r| r.unwrap().0).collect();
                Ok::<_, Error>(keys)
            })
            .unwrap();
        assert_eq!(
            seen,
            [6, 7],
            "{engine}: scans inside see pending writes and removals"
        );
        assert_eq!(
            db.get(&USERS, "ada").unwrap(),
            Some(user("Ada", 36)),
            "{engine}"
        );
        let keys: Vec<u64> = db.iter(&COUNTS).unwrap().map(|r| r.unwrap().0).collect();
        assert_eq!(keys, [6, 7], "{engine}");
    }
}

#[test]
fn caller_error_types_pass_through_transactions() {
    #[derive(Debug)]
    enum AppError {
        Store(Error),
        NotAllowed,
    }
    impl From<Error> for AppError {
        fn from(e: Error) -> Self {
            AppError::Store(e)
        }
    }
    let db = Db::memory(&[]).unwrap();
    let r: Result<(), AppError> = db.transaction(|tx| {
        tx.insert(&COUNTS, &1, &1)?;
        Err(AppError::NotAllowed)
    });
    assert!(matches!(r, Err(AppError::NotAllowed)));
    assert_eq!(db.get(&COUNTS, &1).unwrap(), None);
    let nested: Result<(), AppError> =
        db.transaction(|_| db.insert(&COUNTS, &2, &2).map_err(Into::into));
    assert!(
        matches!(nested, Err(AppError::Store(Error::NestedTransaction))),
        "{nested:?}"
    );
}

fn garbage_store(store: &dyn Store) {
    let mut w = Writes::new();
    w.entry("users")
        .or_default()
        .insert(b"eve".to_vec(), Some(b"{not json".to_vec()));
    w.entry("counts")
        .or_default()
        .insert(vec![1, 2, 3], Some(b"4".to_vec()));
    store.commit(&w).unwrap();
    store.flush().unwrap();
}

fn assert_corruption_reported(db: &Db) {
    let err = db.get(&USERS, "eve").unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::CorruptValue { table: "users", .. }),
        "{msg}"
    );
    assert!(
        msg.contains("b\"eve\"") && msg.contains("restore it from a backup"),
        "{msg}"
    );
    let scanned: Vec<_> = db.iter(&USERS).unwrap().collect();
    assert!(
        matches!(scanned[..], [Err(Error::CorruptValue { .. })]),
        "{scanned:?}"
    );
    let keys: Vec<_> = db.iter(&COUNTS).unwrap().collect();
    assert!(
        matches!(
            &keys[..],
            [Err(Error::CorruptKey {
                table: "counts",
                ..
            })]
        ),
        "{keys:?}"
    );
    // A value of the wrong type is reported the same way.
    const WRONG: Table<String, u64> = Table::new("users");
    db.insert(&USERS, "ada", &user("Ada", 1)).unwrap();
    assert!(matches!(
        db.get(&WRONG, "ada"),
        Err(Error::CorruptValue { .. })
    ));
}

#[test]
fn corrupt_values_and_keys_are_clear_errors() {
    let mem = MemoryStore::new();
    garbage_store(&mem);
    assert_corruption_reported(&Db::with_store(Box::new(mem), &[]).unwrap());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    garbage_store(&SledStore::open(&path).unwrap());
    assert_corruption_reported(&Db::open(&path, &[]).unwrap());
}

#[test]
fn sled_data_survives_reopen_and_a_second_opener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, &[]).unwrap();
    db.insert(&USERS, "ada", &user("Ada", 36)).unwrap();
    let err = SledStore::open(&path)
        .err()
        .expect("a second opener must be refused");
    assert!(
        err.to_string().contains("no other granary process"),
        "{err}"
    );
    drop(db);
    let db = Db::open(&path, &[]).unwrap();
    assert_eq!(db.get(&USERS, "ada").unwrap(), Some(user("Ada", 36)));
}

#[test]
fn the_write_count_moves_with_every_committed_write_and_only_then() {
    for (engine, db, _dir) in engines() {
        let start = db.write_count();
        db.insert(&USERS, "ada", &user("Ada", 36)).unwrap();
        assert_eq!(db.write_count(), start + 1, "{engine}: an insert");
        let _ = db.get(&USERS, "ada").unwrap();
        let _: Vec<_> = db.iter(&USERS).unwrap().collect();
        assert_eq!(db.write_count(), start + 1, "{engine}: reads write nothing");
        db.transaction(|_| Ok::<_, Error>(())).unwrap();
        assert_eq!(db.write_count(), start + 1, "{engine}: an empty transaction commits nothing");
        #[derive(Debug)]
        struct Abandon;
        impl From<Error> for Abandon {
            fn from(_: Error) -> Abandon {
                Abandon
            }
        }
        let _ = db.transaction(|tx| {
            tx.insert(&USERS, "bob", &user("Bob", 1))?;
            Err::<(), Abandon>(Abandon)
        });
        assert_eq!(db.write_count(), start + 1, "{engine}: a failed transaction writes nothing");
        db.transaction(|tx| {
            tx.insert(&USERS, "cy", &user("Cy", 2))?;
            tx.remove(&USERS, "ada")
        })
        .unwrap();
        assert_eq!(db.write_count(), start + 2, "{engine}: one transaction, one count");
        db.remove(&USERS, "nobody").unwrap();
        assert_eq!(db.write_count(), start + 3, "{engine}: a remove");
    }
}

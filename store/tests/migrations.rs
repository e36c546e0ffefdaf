//! Schema versions and migrations, on sled so that reopening is real.

use granary_store::{latest_version, Db, Error, Migration, Table, Tx};

/// Each migration appends its name here, so the test can see which ran, in what order.
const LOG: Table<u64, String> = Table::new("migration_log");
const NAMES: Table<String, String> = Table::new("names");

fn log(tx: &mut Tx<'_>, what: &str) -> Result<(), Error> {
    let next = tx.iter(&LOG)?.count() as u64;
    tx.insert(&LOG, &next, &what.to_string())
}

/// 0 → 1: upper-case every name.
fn upper(tx: &mut Tx<'_>) -> Result<(), Error> {
    log(tx, "upper")?;
    let all: Vec<(String, String)> = tx.iter(&NAMES)?.collect::<Result<_, _>>()?;
    for (k, v) in all {
        tx.insert(&NAMES, &k, &v.to_uppercase())?;
    }
    Ok(())
}

/// 1 → 2: suffix every name; relies on `upper` having run first.
fn suffix(tx: &mut Tx<'_>) -> Result<(), Error> {
    log(tx, "suffix")?;
    let all: Vec<(String, String)> = tx.iter(&NAMES)?.collect::<Result<_, _>>()?;
    for (k, v) in all {
        tx.insert(&NAMES, &k, &format!("{v}!"))?;
    }
    Ok(())
}

fn failing(tx: &mut Tx<'_>) -> Result<(), Error> {
    log(tx, "failing")?;
    tx.insert(&NAMES, "half", &"written".to_string())?;
    Err(Error::Rejected("disk quota table is missing".into()))
}

const V1: &[Migration] = &[Migration::new(0, upper)];
const V2: &[Migration] = &[Migration::new(0, upper), Migration::new(1, suffix)];

fn logged(db: &Db) -> Vec<String> {
    db.iter(&LOG).unwrap().map(|r| r.unwrap().1).collect()
}

#[test]
fn fresh_database_starts_at_latest_without_migrating() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db"), V2).unwrap();
    assert_eq!(db.schema_version(), 2);
    assert_eq!(latest_version(V2), 2);
    assert!(logged(&db).is_empty());
    let mem = Db::memory(V2).unwrap();
    assert_eq!(mem.schema_version(), 2);
    assert!(logged(&mem).is_empty());
}

#[test]
fn pending_migrations_run_once_in_order_and_bump_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, &[]).unwrap();
    assert_eq!(db.schema_version(), 0);
    db.insert(&NAMES, "a", &"ada".to_string()).unwrap();
    drop(db);

    let db = Db::open(&path, V2).unwrap();
    assert_eq!(db.schema_version(), 2);
    assert_eq!(logged(&db), ["upper", "suffix"]);
    assert_eq!(
        db.get(&NAMES, "a").unwrap().as_deref(),
        Some("ADA!"),
        "upper ran before suffix"
    );
    drop(db);

    let db = Db::open(&path, V2).unwrap();
    assert_eq!(logged(&db), ["upper", "suffix"], "reopening reruns nothing");
    assert_eq!(db.get(&NAMES, "a").unwrap().as_deref(), Some("ADA!"));
}

#[test]
fn only_the_migrations_after_the_stored_version_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(Db::open(&path, &[]).unwrap());
    let db = Db::open(&path, V1).unwrap();
    assert_eq!(
        (db.schema_version(), logged(&db)),
        (1, vec!["upper".to_string()])
    );
    drop(db);
    let db = Db::open(&path, V2).unwrap();
    assert_eq!(
        (db.schema_version(), logged(&db)),
        (2, vec!["upper".to_string(), "suffix".into()])
    );
}

#[test]
fn failed_migration_leaves_the_previous_version_and_nothing_of_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(Db::open(&path, &[]).unwrap());
    let broken = [Migration::new(0, upper), Migration::new(1, failing)];
    let err = Db::open(&path, &broken)
        .err()
        .expect("the failing migration must fail open");
    let msg = err.to_string();
    assert!(matches!(err, Error::Migration { from: 1, .. }), "{msg}");
    assert!(
        msg.contains("left at schema 1") && msg.contains("disk quota"),
        "{msg}"
    );

    let db = Db::open(&path, V1).unwrap();
    assert_eq!(db.schema_version(), 1);
    assert_eq!(
        logged(&db),
        ["upper"],
        "the failed migration's writes were discarded"
    );
    assert_eq!(db.get(&NAMES, "half").unwrap(), None);
    drop(db);
    let db = Db::open(&path, V2).unwrap();
    assert_eq!(
        logged(&db),
        ["upper", "suffix"],
        "the fixed migration resumes from schema 1"
    );
}

#[test]
fn newer_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(Db::open(&path, V2).unwrap());
    let err = Db::open(&path, V1)
        .err()
        .expect("an older build must refuse");
    assert!(matches!(err, Error::TooNew { found: 2, known: 1 }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("this database was written by a newer Granary (schema 2); upgrade granary"),
        "{msg}"
    );
    assert_eq!(Db::open(&path, V2).unwrap().schema_version(), 2);
}

#[test]
fn misordered_migration_lists_are_refused() {
    let skipping = [Migration::new(0, upper), Migration::new(2, suffix)];
    let err = Db::memory(&skipping).err().expect("a gap must be refused");
    assert!(
        matches!(err, Error::MigrationOrder { index: 1, from: 2 }),
        "{err}"
    );
    assert!(err.to_string().contains("one per schema version"), "{err}");
}

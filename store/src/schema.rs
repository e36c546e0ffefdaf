//! Opening a database and bringing its schema up to date.
//!
//! Schema versions count migrations: a build that knows N migrations writes schema N, and
//! migration `i` upgrades schema `i` to `i + 1`. The version lives in the reserved table
//! `__granary_meta` under the key `schema_version`.
//!
//! A fresh database (no version recorded) is stamped with the latest version and no
//! migration runs: the code's tables already describe the latest schema, and migrations only
//! transform data that an older build wrote. An existing database runs each pending
//! migration in its own transaction, which also records the new version, so a crash or a
//! failed migration leaves the database at a consistent earlier version and the next open
//! resumes from there.

use std::path::Path;

use crate::engine::{MemoryStore, Store};
use crate::key::Table;
use crate::sled_store::SledStore;
use crate::{Db, Error, Tx};

/// One schema upgrade, from version `from` to `from + 1`.
#[derive(Clone, Copy)]
pub struct Migration {
    /// The version this migration upgrades from.
    pub from: u32,
    /// The upgrade; it runs inside a transaction, so returning `Err` leaves nothing behind.
    pub run: fn(&mut Tx<'_>) -> Result<(), Error>,
}

impl Migration {
    /// A migration from `from` to `from + 1`.
    pub const fn new(from: u32, run: fn(&mut Tx<'_>) -> Result<(), Error>) -> Self {
        Migration { from, run }
    }
}

impl std::fmt::Debug for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Migration({} -> {})", self.from, self.from + 1)
    }
}

const META: Table<String, u32> = Table::reserved("__granary_meta");
const VERSION_KEY: &str = "schema_version";

/// The schema version a build with these migrations writes.
pub fn latest_version(migrations: &[Migration]) -> u32 {
    migrations.len() as u32
}

impl Db {
    /// Open (creating if needed) the sled database in directory `path` and bring it to the
    /// latest schema (see the module docs of [`crate::schema`]).
    pub fn open(path: impl AsRef<Path>, migrations: &[Migration]) -> Result<Db, Error> {
        Db::with_store(Box::new(SledStore::open(path)?), migrations)
    }

    /// A fresh in-memory database at the latest schema, for tests.
    pub fn memory(migrations: &[Migration]) -> Result<Db, Error> {
        Db::with_store(Box::new(MemoryStore::new()), migrations)
    }

    /// Open a database on any engine and bring it to the latest schema.
    pub fn with_store(store: Box<dyn Store>, migrations: &[Migration]) -> Result<Db, Error> {
        for (index, m) in migrations.iter().enumerate() {
            if m.from as usize != index {
                return Err(Error::MigrationOrder {
                    index,
                    from: m.from,
                });
            }
        }
        let latest = latest_version(migrations);
        let mut db = Db::from_store(store);
        let found = db.get(&META, VERSION_KEY)?;
        let mut version = match found {
            Some(v) if v > latest => {
                return Err(Error::TooNew {
                    found: v,
                    known: latest,
                })
            }
            Some(v) => v,
            None => {
                db.insert(&META, VERSION_KEY, &latest)?;
                latest
            }
        };
        for m in &migrations[version as usize..] {
            db.transaction(|tx| {
                (m.run)(tx)?;
                tx.insert(&META, VERSION_KEY, &(m.from + 1))
            })
            .map_err(|e| Error::Migration {
                from: m.from,
                source: Box::new(e),
            })?;
            version = m.from + 1;
        }
        db.version = version;
        Ok(db)
    }
}

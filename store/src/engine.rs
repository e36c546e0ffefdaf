//! The engine boundary: a small, object-safe, byte-level trait that sled, a memory map, or
//! later redb can implement. Everything typed lives above it in [`crate::Db`].

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use crate::Error;

/// One transaction's pending writes: table name → key → `Some(value)` to insert or `None`
/// to remove.
pub type Writes = BTreeMap<&'static str, BTreeMap<Vec<u8>, Option<Vec<u8>>>>;

/// A stored key and value, as bytes.
pub type RawEntry = (Vec<u8>, Vec<u8>);

/// Entries of a table in ascending key order.
pub type RawIter = Box<dyn Iterator<Item = Result<RawEntry, Error>> + Send>;

/// A byte-level storage engine: named tables of sorted byte keys.
///
/// [`crate::Db`] serialises all commits through one lock, so an engine only has to make each
/// [`Store::commit`] atomic (all tables or none, also across a crash) and each
/// [`Store::flush`] a durability point (every commit that returned before it survives
/// `kill -9` and power loss).
pub trait Store: Send + Sync {
    /// The value stored under `key` in `table`; a table never written to is empty.
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error>;
    /// The entries of `table` whose keys fall between `start` and `end`, in key order.
    /// `start` is never above `end` (the caller checks).
    fn range(
        &self,
        table: &str,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    ) -> Result<RawIter, Error>;
    /// Apply `writes` to every table they name, atomically.
    fn commit(&self, writes: &Writes) -> Result<(), Error>;
    /// Make every commit that has returned durable.
    fn flush(&self) -> Result<(), Error>;
}

/// An engine that keeps everything in memory, for unit tests of other crates. Commits are
/// atomic; nothing survives the process.
#[derive(Default)]
pub struct MemoryStore {
    tables: RwLock<BTreeMap<String, MemoryTable>>,
}

type MemoryTable = BTreeMap<Vec<u8>, Vec<u8>>;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn get(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
        Ok(tables.get(table).and_then(|t| t.get(key).cloned()))
    }

    fn range(
        &self,
        table: &str,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    ) -> Result<RawIter, Error> {
        let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
        let entries: Vec<Result<RawEntry, Error>> = match tables.get(table) {
            Some(t) => t
                .range((start, end))
                .map(|(k, v)| Ok((k.clone(), v.clone())))
                .collect(),
            None => Vec::new(),
        };
        Ok(Box::new(entries.into_iter()))
    }

    fn commit(&self, writes: &Writes) -> Result<(), Error> {
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        for (name, entries) in writes {
            let table = tables.entry(name.to_string()).or_default();
            for (k, v) in entries {
                match v {
                    Some(v) => table.insert(k.clone(), v.clone()),
                    None => table.remove(k),
                };
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), Error> {
        Ok(())
    }
}
